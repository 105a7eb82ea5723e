"""describe_hdlc reassembles a profile read through GET blocks, fills null-compressed rows and scales columns."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from amiflow.errors import FrameError
from amiflow.types import parse_obis
from protocols.dlms import axdr, describe_hdlc
from protocols.dlms.cosem import DateTime, ScalerUnit
from protocols.dlms.hdlc import NEED_DATA, HdlcAddress, HdlcConnection, Role
from protocols.dlms.profile_generic import CaptureObject
from protocols.dlms.xdlms import AttributeDescriptor, GetRequest, GetResponse

PROFILE = parse_obis("1-0:99.1.0")
T0 = datetime(2026, 3, 1, 0, 15, tzinfo=UTC)


def _capture() -> bytes:
    client = HdlcConnection(Role.CLIENT, client=HdlcAddress(16), server=HdlcAddress(1))
    server = HdlcConnection(Role.SERVER, client=HdlcAddress(16), server=HdlcAddress(1))
    wire = bytearray()

    def pump(src: HdlcConnection, dst: HdlcConnection, data: bytes) -> None:
        while data:
            wire.extend(data)
            dst.receive_data(data)
            while dst.next_event() is not NEED_DATA:
                pass
            data = dst.data_to_send()
            src, dst = dst, src

    pump(client, server, client.connect())
    columns = [CaptureObject(8, parse_obis("0-0:1.0.0"), 2), CaptureObject(3, parse_obis("1-0:1.29.0"), 2)]
    items: tuple[tuple[AttributeDescriptor, None], ...] = (
        (AttributeDescriptor(7, PROFILE, 3), None),
        (AttributeDescriptor(7, PROFILE, 4), None),
        (AttributeDescriptor(3, parse_obis("1-0:1.29.0"), 3), None),
    )
    pump(client, server, client.send(GetRequest(3, 0xC1, items).to_bytes()))
    answers = (
        axdr.encode([c.to_value() for c in columns]),
        axdr.encode(axdr.DoubleLongUnsigned(900)),
        axdr.encode(ScalerUnit(-1, 30).to_value()),
    )
    pump(server, client, server.send(GetResponse(3, 0xC1, tuple((a, None) for a in answers)).to_bytes()))
    rows: list[tuple[object, object]] = [(DateTime.from_datetime(T0).to_bytes(), axdr.DoubleLongUnsigned(1234))]
    rows += [(None, axdr.DoubleLongUnsigned(1000 + i)) for i in range(40)] + [(None, None)]
    data = axdr.encode(rows)
    pump(client, server, client.send(GetRequest(1, 0xC2, ((AttributeDescriptor(7, PROFILE, 2), None),)).to_bytes()))
    blocks = [data[i : i + 100] for i in range(0, len(data), 100)]
    for n, block in enumerate(blocks, 1):
        last = n == len(blocks)
        pump(server, client, server.send(GetResponse(2, 0xC2, ((block, None),), last=last, block=n).to_bytes()))
        if not last:
            pump(client, server, client.send(GetRequest(2, 0xC2, block=n).to_bytes()))
    return bytes(wire)


def test_profile_through_blocks_gives_named_scaled_readings() -> None:
    out = describe_hdlc(_capture())
    readings = [r for r in out["readings"] if r["obis"] == "1-0:1.29.0"]
    assert len(readings) == 42
    assert readings[0] == {"obis": "1-0:1.29.0", "ts": T0.isoformat(), "value": 123.4, "unit": "Wh"}
    assert readings[1]["ts"] == "2026-03-01T00:30:00+00:00" and readings[1]["value"] == 100.0
    assert readings[-1]["value"] == readings[-2]["value"] == 103.9  # null-data repeats the row before
    assert readings[-1]["ts"] == "2026-03-01T10:30:00+00:00"
    assert any(f.get("apdu") == "GET-Response-with-datablock" for f in out["frames"])
    assert out["issues"] == []


def test_truncated_capture_raises() -> None:
    with pytest.raises(FrameError):
        describe_hdlc(_capture()[:5])
