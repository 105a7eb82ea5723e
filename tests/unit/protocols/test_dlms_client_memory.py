"""DlmsClient against amiflow's server association over an in-memory null modem (no sockets): TCP wrapper and
HDLC, block transfer, a lost or corrupted HDLC answer recovered by repeating the I-frame, refused associations and
refused access, exception responses, timeouts. The fake meter here is deliberately small; the full simulator is
exercised by the HIL tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from amiflow.errors import ConnectError, ProtocolError, ReadTimeout, TransportError
from amiflow.types import Source, parse_obis
from amiflow.uri import parse_meter_uri
from protocols.dlms import DlmsClient, axdr
from protocols.dlms.acse import Mechanism
from protocols.dlms.cosem import ControlState, DateTime, ScalerUnit
from protocols.dlms.hdlc import NEED_DATA, Data, HdlcAddress, HdlcConnection, Role
from protocols.dlms.profile_generic import CaptureObject, parse_range_descriptor
from protocols.dlms.server import AccessLevel, ClientPolicy, ServerAssociation
from protocols.dlms.wrapper import WrapperFrame, WrapperFramer
from protocols.dlms.xdlms import AccessSelection, AttributeDescriptor, ExceptionResponse
from protocols.transport import MemoryLink, null_modem

T0 = datetime(2026, 11, 1, tzinfo=UTC)
PROFILE = parse_obis("1-0:99.1.0")
ENERGY = parse_obis("1-0:1.29.0")


@dataclass
class FakeMeter:
    """Clock, two registers, a serial number, a 15-minute profile (row i has i Wh) and a disconnect control."""

    now: datetime = T0 + timedelta(days=2)
    rows: int = 192
    relay: ControlState = ControlState.CONNECTED
    mode: int = 1
    sets: list[Any] = field(default_factory=list)

    def get(self, desc: AttributeDescriptor, access: AccessSelection | None, level: AccessLevel) -> bytes | int:
        key = (desc.class_id, str(desc.obis), desc.index)
        if key == (8, "0-0:1.0.0", 2):
            return axdr.encode(DateTime.from_datetime(self.now).to_bytes())
        if key == (1, "0-0:96.1.0", 2):
            return axdr.encode(b"SIM0001")
        if key == (1, "0-0:42.0.0", 2):
            return axdr.encode(b"AMF0000000001")
        if key == (3, "1-0:1.8.0", 2):
            return axdr.encode(axdr.DoubleLongUnsigned(123456))
        if key == (3, "1-0:1.8.0", 3):
            return axdr.encode(ScalerUnit(1, 30).to_value())
        if key == (3, "1-0:1.29.0", 3):
            return axdr.encode(ScalerUnit(0, 30).to_value())
        if key == (7, "1-0:99.1.0", 3):
            cols = [CaptureObject(8, parse_obis("0-0:1.0.0"), 2), CaptureObject(3, ENERGY, 2)]
            return axdr.encode([c.to_value() for c in cols])
        if key == (7, "1-0:99.1.0", 4):
            return axdr.encode(axdr.DoubleLongUnsigned(900))
        if key == (7, "1-0:99.1.0", 2):
            return self._buffer(access)
        if desc.class_id == 70 and str(desc.obis) == "0-0:96.3.10":
            return axdr.encode(
                {
                    2: self.relay is ControlState.CONNECTED,
                    3: axdr.Enum(self.relay),
                    4: axdr.Enum(self.mode),
                }.get(desc.index)
            )
        return 4  # object-undefined

    def _buffer(self, access: AccessSelection | None) -> bytes:
        assert access is not None and access.selector == 1
        lo, hi = parse_range_descriptor(access)
        rows: list[tuple[Any, ...]] = []
        for i in range(1, self.rows + 1):
            at = T0 + timedelta(minutes=15 * i)
            if lo <= at <= hi:
                clock = DateTime.from_datetime(at).to_bytes() if not rows else None  # null = previous + period
                rows.append((clock, axdr.DoubleLongUnsigned(i)))
        return axdr.encode(rows)

    def set(self, desc: AttributeDescriptor, data: bytes, level: AccessLevel) -> int:
        if level < AccessLevel.MANAGE:
            return 3
        self.sets.append(axdr.decode(data))
        return 0

    def action(self, desc: AttributeDescriptor, data: bytes | None, level: AccessLevel) -> tuple[int, None]:
        if desc.index == 1:
            self.relay = ControlState.DISCONNECTED
        else:
            self.relay = ControlState.READY_FOR_RECONNECTION if self.mode in (2, 4) else ControlState.CONNECTED
        return 0, None


@dataclass
class Faults:
    drop: int = 0  # answers to swallow (the client must repeat its I-frame)
    corrupt: int = 0  # answers to send with a broken FCS
    exception: bool = False
    silent: bool = False  # the meter stops answering I-frames (repeats included) once the link is up


POLICIES = {
    16: ClientPolicy(Mechanism.NONE, None, AccessLevel.READ),
    1: ClientPolicy(Mechanism.LLS, b"secret", AccessLevel.MANAGE),
}


async def _serve(link: MemoryLink, meter: FakeMeter, faults: Faults, hdlc: bool) -> None:
    assoc: ServerAssociation | None = None
    conn = HdlcConnection(Role.SERVER, client=HdlcAddress(1), server=HdlcAddress(1)) if hdlc else None
    framer = WrapperFramer()

    def answer(apdu: bytes, sap: int) -> bytes | None:
        nonlocal assoc
        if apdu[:1] == b"\x60":
            assoc = ServerAssociation(meter, POLICIES.get(sap), max_pdu=256)
        if assoc is None:
            return ExceptionResponse(1, 1).to_bytes()
        if faults.exception and apdu[:1] in (b"\xc0", b"\xc3"):
            return ExceptionResponse(1, 1).to_bytes()
        return assoc.handle(apdu)

    async with link:
        while True:
            try:
                chunk = await link.read(4096, timeout_s=30)
            except TransportError:
                return
            if conn is None:
                framer.receive_data(chunk)
                while isinstance(frame := framer.next_event(), WrapperFrame):
                    out = answer(frame.apdu, frame.source)
                    if out is not None:
                        await link.write(WrapperFrame(frame.dest, frame.source, out).to_bytes())
                continue
            conn.receive_data(chunk)
            while (event := conn.next_event()) is not NEED_DATA:
                await link.write(conn.data_to_send())
                if isinstance(event, Data) and faults.silent:
                    continue
                if isinstance(event, Data):
                    out = answer(event.apdu, sap=1 if b"\x8b\x07" in event.apdu else 16)  # LLS asked: management
                    raw = conn.send(out or b"")
                    if faults.drop:
                        faults.drop -= 1
                        continue
                    if faults.corrupt:
                        faults.corrupt -= 1
                        raw = raw[:-3] + bytes((raw[-3] ^ 0xFF,)) + raw[-2:]
                    await link.write(raw)
            pending = conn.data_to_send()
            if not faults.silent:
                await link.write(pending)


@contextlib.asynccontextmanager
async def _meter(
    uri: str, *, password: bytes | None = None, faults: Faults | None = None, meter: FakeMeter | None = None
) -> AsyncIterator[tuple[DlmsClient, FakeMeter]]:
    a, b = null_modem(timeout_s=0.3)
    a.peer = uri  # what open_link names the link: the meter URI
    fake = meter or FakeMeter()
    parsed = parse_meter_uri(uri)
    task = asyncio.create_task(_serve(b, fake, faults or Faults(), parsed.hdlc))
    try:
        client = DlmsClient(parsed, password=password, timeout_s=0.3, link=a)
        yield client, fake
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


URIS = ["dlms+tcp://127.0.0.1:4059", "dlms+hdlc+tcp://127.0.0.1:4061"]


@pytest.mark.parametrize("uri", URIS)
async def test_reads_over_wrapper_and_hdlc(uri: str) -> None:
    async with _meter(uri) as (client, fake), client:
        ident = await client.identify()
        assert (ident["serial"], ident["manufacturer"]) == ("SIM0001", "AMF")
        assert await client.read_register("1-0:1.8.0") == (1234560.0, "Wh")
        assert await client.read_clock() == fake.now
        batch = await client.read_profile("1-0:99.1.0", T0, T0 + timedelta(days=1))
    assert len(batch) == 96  # start < ts <= end, across several GET blocks and HDLC segments
    assert batch.ts[0] == int((T0 + timedelta(minutes=15)).timestamp())
    assert np.all(np.diff(batch.ts) == 900)
    assert batch.value.tolist() == [float(i) for i in range(1, 97)]
    assert set(batch.obis) == {"1-0:1.29.0"} and set(batch.unit) == {"Wh"}
    assert set(batch.source) == {int(Source.DLMS)}


@pytest.mark.parametrize("uri", URIS)
async def test_public_client_may_not_act(uri: str) -> None:
    async with _meter(uri) as (client, fake), client:
        with pytest.raises(ProtocolError, match="read-write-denied"):
            await client.disconnect()
        assert await client.read_disconnect_state() == (True, ControlState.CONNECTED, 1)
    assert fake.relay is ControlState.CONNECTED


async def test_management_client_disconnects_and_arms() -> None:
    fake = FakeMeter(mode=2)
    async with _meter("dlms+tcp://127.0.0.1:4059", password=b"secret", meter=fake) as (client, _), client:
        await client.disconnect()
        assert await client.read_disconnect_state() == (False, ControlState.DISCONNECTED, 2)
        await client.reconnect()
        assert await client.read_disconnect_state() == (False, ControlState.READY_FOR_RECONNECTION, 2)
        await client.set_clock(T0)
    assert fake.sets and DateTime.from_bytes(fake.sets[0]).to_datetime() == T0


@pytest.mark.parametrize("uri", URIS)
async def test_wrong_password_is_a_refused_association(uri: str) -> None:
    async with _meter(uri, password=b"wrong") as (client, _):
        with pytest.raises(ConnectError, match=r"association refused.*authentication-failure") as info:
            await client.__aenter__()
        assert uri in str(info.value)


async def test_hdlc_lost_and_corrupted_answers_are_repeated() -> None:
    faults = Faults(drop=1, corrupt=1)
    async with _meter(URIS[1], faults=faults) as (client, fake), client:
        assert await client.read_clock() == fake.now
        assert await client.read_clock() == fake.now
    assert (faults.drop, faults.corrupt) == (0, 0)


async def test_exception_response_is_a_protocol_error() -> None:
    async with _meter(URIS[0], faults=Faults(exception=True)) as (client, _), client:
        with pytest.raises(ProtocolError, match="service-not-allowed"):
            await client.read_clock()


async def test_silent_meter_times_out_naming_the_uri() -> None:
    async with _meter(URIS[1], faults=Faults(silent=True)) as (client, _):
        with pytest.raises((ReadTimeout, ConnectError)) as info:
            async with client:
                await client.read_clock()
        assert "dlms+hdlc+tcp://127.0.0.1:4061" in str(info.value)


async def test_missing_object_names_the_access_result() -> None:
    async with _meter(URIS[0]) as (client, _), client:
        with pytest.raises(ProtocolError, match="object-undefined"):
            await client.read_register("1-0:2.8.0")
