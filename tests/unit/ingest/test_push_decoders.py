"""Push meters' byte streams to frames: SML and P1 adapters resync after garbage, name readings by the registered
meter, refuse another meter's SML files, and give every bad frame its raw bytes and a stable reason."""

from __future__ import annotations

import pytest

from amiflow.errors import ConfigError
from amiflow.types import Source
from amiflow.uri import parse_meter_uri
from ingest.push_decoders import BadFrame, GoodFrame, P1Push, PushEvent, SmlPush, push_decoder
from protocols.p1 import dsmr5_telegram
from simulators.sml_profiles import SmlMeter

TS = 1_790_000_000


def _feed(decoder: SmlPush | P1Push, data: bytes, step: int) -> list[PushEvent]:
    events: list[PushEvent] = []
    for i in range(0, len(data), step):
        events += decoder.feed(data[i : i + step], TS)
    return events


def _sml_stream(meter: SmlMeter) -> tuple[bytes, list[bytes]]:
    files = [meter.file(TS + k) for k in range(4)]
    flipped = bytearray(files[1])
    flipped[len(flipped) // 2] ^= 0x10
    cut = files[2][: len(files[2]) // 2]
    stream = b"\x00\x1a noise \xff" + files[0] + bytes(flipped) + cut + b"garbage" + files[3]
    return stream, files


@pytest.mark.parametrize("step", [1, 7, 97, 100_000])
def test_sml_stream_resyncs_and_names_readings_by_the_registry(step: int) -> None:
    meter = SmlMeter("ehz", seed=3, meter_index=5)
    stream, files = _sml_stream(meter)
    decoder = SmlPush("1EMH0010000005")
    events = _feed(decoder, stream, step)
    good = [e for e in events if isinstance(e, GoodFrame)]
    bad = [e for e in events if isinstance(e, BadFrame)]
    assert [g.raw for g in good] == [files[0], files[3]]
    assert sorted(b.reason for b in bad) == ["bad_crc", "truncated"]
    assert all(b.raw for b in bad)
    assert decoder.skipped == len(b"\x00\x1a noise \xff")  # the garbage after the cut file is part of that file
    imp, _ = meter.registers_wh(TS)
    batch = good[0].batch
    assert set(batch.meter.tolist()) == {"1EMH0010000005"}
    assert set(batch.source.tolist()) == {int(Source.SML)}
    assert dict(zip(batch.obis.tolist(), batch.value.tolist(), strict=True))["1-0:1.8.0"] == imp


def test_sml_meter_identity_is_checked() -> None:
    meter = SmlMeter("itron", meter_index=2)
    data = meter.file(TS)
    (wrong,) = SmlPush("1ITR0010000099").feed(data, TS)
    assert isinstance(wrong, BadFrame) and wrong.reason == "wrong_meter" and wrong.raw == data
    assert "1 ITR00 10000002" in wrong.detail
    # the registry name may be any name when the URI says which server id the link carries
    (pinned,) = SmlPush("KITCHEN", expected_id="1 itr00 10000002").feed(data, TS)
    assert isinstance(pinned, GoodFrame) and set(pinned.batch.meter.tolist()) == {"KITCHEN"}


def test_sml_link_end_inside_a_file_is_truncated_and_the_next_link_starts_clean() -> None:
    meter = SmlMeter("easymeter")
    decoder = SmlPush("1ESY1110000000")
    data = meter.file(TS)
    assert decoder.feed(data[:50], TS) == []
    (cut,) = decoder.close(TS)
    assert isinstance(cut, BadFrame) and cut.reason == "truncated" and cut.raw == data[:50]
    (again,) = decoder.feed(data, TS)
    assert isinstance(again, GoodFrame) and len(again.batch) > 0


def _telegram(k: int) -> bytes:
    return dsmr5_telegram(equipment_id="E0099", ts=TS + k, import_wh=(1000.0 + k, 50.0))


@pytest.mark.parametrize("step", [1, 13, 100_000])
def test_p1_stream_bad_crc_truncation_and_noise(step: int) -> None:
    sent = [_telegram(k) for k in range(4)]
    bad = bytearray(sent[1])
    bad[bad.index(b"1-0:1.8.1(") + 12] ^= 0x01
    cut = sent[2][:40]
    decoder = P1Push("FLAT7")
    events = _feed(decoder, b"\x00\xffnoise" + sent[0] + bytes(bad) + cut + sent[3], step)
    assert [type(e).__name__ for e in events] == ["GoodFrame", "BadFrame", "BadFrame", "GoodFrame"]
    reasons = [e.reason for e in events if isinstance(e, BadFrame)]
    assert reasons == ["bad_crc", "truncated"]
    truncated = events[2]
    assert isinstance(truncated, BadFrame) and truncated.raw == cut
    first = events[0]
    assert isinstance(first, GoodFrame) and set(first.batch.meter.tolist()) == {"FLAT7"}
    values = dict(zip(first.batch.obis.tolist(), first.batch.value.tolist(), strict=True))
    assert values["1-0:1.8.0"] == 1050.0
    assert decoder.skipped >= len(b"\x00\xffnoise")


def test_p1_link_end_inside_a_telegram() -> None:
    decoder = P1Push("FLAT7")
    assert decoder.feed(_telegram(0)[:30], TS) == []
    (cut,) = decoder.close(TS)
    assert isinstance(cut, BadFrame) and cut.reason == "truncated" and cut.raw == _telegram(0)[:30]
    assert decoder.close(TS) == []


def test_adapter_by_uri() -> None:
    sml = push_decoder("M1", parse_meter_uri("sml+tcp://127.0.0.1:3001?server_id=1EMH0012345678"))
    assert isinstance(sml, SmlPush) and sml.expected == "1emh0012345678"
    assert isinstance(push_decoder("M2", parse_meter_uri("sml+serial:///dev/ttyUSB0?baud=9600")), SmlPush)
    assert isinstance(push_decoder("M3", parse_meter_uri("p1+tcp://127.0.0.1:2001")), P1Push)
    with pytest.raises(ConfigError, match="not push meters"):
        push_decoder("M4", parse_meter_uri("dlms+tcp://127.0.0.1:4059"))


def test_sml_uris_parse() -> None:
    serial = parse_meter_uri("sml+serial:///dev/ttyUSB0?baud=9600")
    assert (serial.protocol, serial.link, serial.path, serial.params) == (
        "sml",
        "serial",
        "/dev/ttyUSB0",
        {"baud": "9600"},
    )
    tcp = parse_meter_uri("sml+tcp://ser2net.local:3001")
    assert (tcp.protocol, tcp.link, tcp.host, tcp.port) == ("sml", "tcp", "ser2net.local", 3001)
    with pytest.raises(ConfigError, match="port is required"):
        parse_meter_uri("sml+tcp://ser2net.local")
    with pytest.raises(ConfigError, match="absolute device path"):
        parse_meter_uri("sml+serial://ttyUSB0")
