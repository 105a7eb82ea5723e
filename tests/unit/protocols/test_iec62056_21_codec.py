"""IEC 62056-21 mode C codec: standard message bytes, BCC, data lines, readout parsing, both state machines fed at
every split, garbage that must resync or raise (never hang), and the async client against the sans-I/O meter over
an in-memory null modem."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amiflow.errors import FrameError, ProtocolError
from amiflow.types import Source
from protocols.iec62056_21 import (
    ACK,
    ETX,
    NEED_DATA,
    STX,
    Break,
    DataSet,
    Identification,
    IecClient,
    IecMeter,
    OptionSelect,
    SignOn,
    bcc,
    build_break,
    build_identification,
    build_option_select,
    build_readout,
    build_sign_on,
    parse_data_line,
    parse_identification,
    parse_readout,
)

LINES = [
    "0-0:C.1.0(12345678)",
    "0-0:0.9.1(10:15:30)",
    "0-0:0.9.2(26-11-26)",
    "1-0:1.8.0(001234.567*kWh)",
    "1-0:1.8.0*01(001000.000*kWh)",
    "1-0:2.8.0(000010.001*kWh)",
    "1-0:1.7.0(00.512*kW)",
    "1.8.1(000800.000*kWh)",
    "32.7.0(230.1*V)",
    "F.F(00000000)",
]


def test_standard_messages() -> None:
    assert build_sign_on() == b"/?!\r\n"
    assert build_sign_on("12345678") == b"/?12345678!\r\n"
    # PROTOCOLS.md: 06 30 35 30 0D 0A = normal protocol, 9600 Bd, data readout
    assert build_option_select("5") == bytes.fromhex("063035300d0a")
    assert build_identification("ISK", "5", "\\2MT382") == b"/ISK5\\2MT382\r\n"
    assert build_break() == b"\x01B0\x03q"  # BCC of 'B' '0' ETX = 0x42 ^ 0x30 ^ 0x03 = 0x71


def test_bcc_covers_everything_after_stx_through_etx() -> None:
    block = build_readout(["1.8.0(1*kWh)"])
    assert block[0] == STX and block[-2] == ETX
    assert block[-1] == bcc(block[1:-1])
    assert block[1:-2].endswith(b"!\r\n")


def test_identification_forms() -> None:
    ident = parse_identification(b"/ISK5\\2MT382-1000\r\n")
    assert ident == Identification("ISK", "5", "MT382-1000", "ISK5\\2MT382-1000")
    assert ident.baudrate == 9600
    assert parse_identification(b"/LGZ4ZMD3104407.B32").baudrate == 4800
    for bad in (b"ISK5x", b"/IS", b"/?!"):
        with pytest.raises(FrameError):
            parse_identification(bad)


def test_data_lines() -> None:
    assert parse_data_line("1.8.0(001234.567*kWh)") == [DataSet("1.8.0", (("001234.567", "kWh"),))]
    assert parse_data_line("1.6.0(0.512*kW)(26-11-01 10:15)") == [
        DataSet("1.6.0", (("0.512", "kW"), ("26-11-01 10:15", "")))
    ]
    assert parse_data_line("1.8.1(1*kWh)1.8.2(2*kWh)") == [
        DataSet("1.8.1", (("1", "kWh"),)),
        DataSet("1.8.2", (("2", "kWh"),)),
    ]
    assert parse_data_line("(00.25*kW)") == [DataSet("", (("00.25", "kW"),))]
    for bad in ("hello", "1.8.0 junk(1)", "1.8.0(1*kWh) tail"):
        with pytest.raises(ValueError):
            parse_data_line(bad)


def test_parse_readout_values_serial_clock() -> None:
    parsed = parse_readout(build_readout(LINES))
    assert parsed.issues == ()
    assert parsed.serial == "12345678"
    assert parsed.clock == datetime(2026, 11, 26, 10, 15, 30, tzinfo=UTC)
    got = {o: (v, u) for o, v, u in zip(parsed.readings.obis, parsed.readings.value, parsed.readings.unit, strict=True)}
    assert got == {
        "1-0:1.8.0": (1234567.0, "Wh"),  # the historic 1.8.0*01 is not a current reading
        "1-0:2.8.0": (10001.0, "Wh"),
        "1-0:1.7.0": (512.0, "W"),
        "1-0:1.8.1": (800000.0, "Wh"),
        "1-0:32.7.0": (230.1, "V"),
    }
    assert set(parsed.readings.meter) == {"12345678"}
    assert set(parsed.readings.source) == {Source.IEC62056_21}
    assert set(parsed.readings.ts) == {int(datetime(2026, 11, 26, 10, 15, 30, tzinfo=UTC).timestamp())}


def test_parse_readout_clock_zone_and_named_meter() -> None:
    parsed = parse_readout(build_readout(LINES), meter="M1", ts=1_000, tz=ZoneInfo("Europe/Amsterdam"))
    assert parsed.clock == datetime(2026, 11, 26, 9, 15, 30, tzinfo=UTC)  # CET = UTC+1
    assert set(parsed.readings.meter) == {"M1"} and set(parsed.readings.ts) == {1_000}


def test_parse_readout_issues() -> None:
    block = build_readout(LINES)
    bad = parse_readout(block[:-1] + bytes([block[-1] ^ 1]))
    assert [i.code for i in bad.issues] == ["bad_bcc"] and len(bad.readings) == 0
    truncated = parse_readout(block[: len(block) // 2])
    assert "no_end" in [i.code for i in truncated.issues]
    noisy = parse_readout(build_readout(["1.8.0(1*kWh)", "garbage line", "C.1.0(9)"]))
    assert [i.code for i in noisy.issues] == ["bad_line"] and len(noisy.readings) == 1
    anonymous = parse_readout(build_readout(["1.8.0(1*kWh)"]))
    assert [i.code for i in anonymous.issues] == ["no_meter_id"]


def _meter_answer(client: IecClient, ident: bytes, block: bytes, split: int) -> list[object]:
    events: list[object] = []
    stream = [ident, None, block]
    for part in stream:
        if part is None:
            client.send_option_select()
            continue
        for i in range(0, len(part), split):
            client.receive_data(part[i : i + split])
            while (event := client.next_event()) is not NEED_DATA:
                events.append(event)
    return events


@pytest.mark.parametrize("split", [1, 2, 3, 7, 64, 4096])
def test_client_at_every_split(split: int) -> None:
    client = IecClient(max_baudrate=9600)
    assert client.send_sign_on() == b"/?!\r\n"
    block = build_readout(LINES)
    events = _meter_answer(client, b"/?!\r\n/ISK6\\2MT382\r\n", block, split)  # an echoed sign-on is skipped
    assert isinstance(events[0], Identification) and events[1] == block
    assert client.baudrate == 9600 and client.state == "done"  # 19200 offered, capped at 9600


def test_client_resyncs_over_noise_and_rejects_bad_bcc() -> None:
    client = IecClient()
    client.send_sign_on()
    client.receive_data(b"\x00\xffnoise/bad\r\n/ABC5meter\r\n")
    assert client.next_event() == Identification("ABC", "5", "meter", "ABC5meter")
    assert client.discarded > 0
    client.send_option_select()
    block = build_readout(LINES)
    client.receive_data(b"xx" + block[:-1] + bytes([block[-1] ^ 0xFF]))
    with pytest.raises(FrameError, match="BCC"):
        client.next_event()


def test_client_bounds_noise_and_runaway_blocks() -> None:
    client = IecClient(max_bytes=1000)
    client.send_sign_on()
    with pytest.raises(FrameError, match="noise"):
        for _ in range(100):
            client.receive_data(b"z" * 100)
            assert client.next_event() is NEED_DATA
    client = IecClient(max_bytes=1000)
    client.send_sign_on()
    client.receive_data(b"/ABC5x\r\n")
    client.next_event()
    client.send_option_select()
    with pytest.raises(FrameError, match="without ETX"):
        for _ in range(100):
            client.receive_data(bytes([STX]) + b"1.8.0(1)\r\n" * 20)
            assert client.next_event() is NEED_DATA
    with pytest.raises(ProtocolError):
        IecClient().send_option_select()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_garbage_never_hangs_or_crashes(data: bytes) -> None:
    client = IecClient(max_bytes=4096)
    client.send_sign_on()
    client.receive_data(data)
    for _ in range(len(data) + 2):
        try:
            event = client.next_event()
        except FrameError:
            break
        if event is NEED_DATA:
            break
        if isinstance(event, Identification):
            client.send_option_select()
    meter = IecMeter()
    meter.receive_data(data)
    for _ in range(len(data) + 2):
        if meter.next_event() is NEED_DATA:
            break
    parse_readout(data, meter="M")  # issues, never exceptions


values = st.decimals(min_value=0, max_value=999999, places=3, allow_nan=False, allow_infinity=False)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["1.8.0", "2.8.0", "1.8.1", "1.8.2", "3.8.0"]), values), max_size=5))
def test_readout_round_trip(items: list[tuple[str, Decimal]]) -> None:
    regs = dict(items)
    block = build_readout(["C.1.0(42)"] + [f"{addr}({value}*kWh)" for addr, value in regs.items()])
    parsed = parse_readout(block)
    assert parsed.issues == ()
    got = dict(zip(parsed.readings.obis, parsed.readings.value, strict=True))
    assert got == {f"1-0:{addr}": float(value * 1000) for addr, value in regs.items()}  # exact, as the meter wrote it


def test_meter_side_events_at_every_split() -> None:
    stream = b"/?!\r\n" + build_option_select("5") + b"junk\r\n/?42!\r\n" + build_break()
    for split in (1, 2, 5, len(stream)):
        meter = IecMeter()
        events = []
        for i in range(0, len(stream), split):
            meter.receive_data(stream[i : i + split])
            while (event := meter.next_event()) is not NEED_DATA:
                events.append(event)
        assert events == [SignOn(""), OptionSelect("0", "5", "0"), SignOn("42"), Break()]
        assert meter.discarded == 4


async def test_async_client_against_meter_over_null_modem() -> None:
    """The real client (read_iec62056_21's loop) against IecMeter over an in-memory link pair."""
    from protocols.iec62056_21.reader import _await_event
    from protocols.transport import null_modem

    a, b = null_modem(timeout_s=1.0)

    async def meter_side() -> None:
        proto = IecMeter()
        while True:
            proto.receive_data(await b.read())
            while (event := proto.next_event()) is not NEED_DATA:
                if isinstance(event, SignOn):
                    await b.write(build_identification("AMF", "5", "sim"))
                elif isinstance(event, OptionSelect):
                    await b.write(build_readout(LINES))
                    return

    async with a, b:
        task = asyncio.create_task(meter_side())
        client = IecClient()
        await a.write(client.send_sign_on())
        ident = await _await_event(a, client, Identification)
        ack = client.send_option_select()
        assert ack[0] == ACK
        await a.write(ack)
        block = await _await_event(a, client, bytes)
        await task
    assert ident.manufacturer == "AMF"
    assert parse_readout(block).serial == "12345678"
