"""SML values -> readings: exact scaling, units, negative values, meter ids as printed, timestamps, quirks."""

from __future__ import annotations

import pytest

from amiflow.types import ReadingBatch
from protocols.sml import (
    SML_SOURCE,
    GetListRes,
    GetProfileListRes,
    ListEntry,
    PeriodEntry,
    PublicOpenRes,
    SmlMessage,
    SmlTime,
    format_server_id,
    meter_id,
    sml_readings,
)

SERVER = bytes.fromhex("0a01454d480000003039")
TS = 1_767_226_500


def _list(*entries: ListEntry, server: bytes | None = SERVER, sensor: SmlTime | None = None) -> list[SmlMessage]:
    return [SmlMessage(b"\x01", 0, 0, GetListRes(None, server, None, sensor, tuple(entries)))]


def _entry(obis: str, unit: int | None, scaler: int | None, value: object, **kw: object) -> ListEntry:
    return ListEntry(bytes.fromhex(obis), unit=unit, scaler=scaler, value=value, **kw)  # type: ignore[arg-type]


def _rows(batch: ReadingBatch) -> dict[str, tuple[float, str]]:
    return {str(o): (float(v), str(u)) for o, v, u in zip(batch.obis, batch.value, batch.unit, strict=True)}


def test_scaler_is_applied_exactly_in_base_units() -> None:
    result = sml_readings(
        _list(
            _entry("0100010800ff", 30, -1, 123456789),  # Wh, 10^-1
            _entry("0100020800ff", 30, -4, 28718661207),
            _entry("0100100700ff", 27, -2, -3000),  # negative power: export
            _entry("0100200700ff", 35, -1, 2304),
            _entry("01001f0700ff", 33, -2, 41),
            _entry("01000e0700ff", 44, -1, 500),
            _entry("0100030800ff", 32, 3, 7),  # varh, 10^3
            _entry("0701030000ff", 13, -3, 1234567),  # gas m3
        ),
        received_ts=TS,
    )
    assert _rows(result.batch) == {
        "1-0:1.8.0": (12345678.9, "Wh"),
        "1-0:2.8.0": (2871866.1207, "Wh"),
        "1-0:16.7.0": (-30.0, "W"),
        "1-0:32.7.0": (230.4, "V"),
        "1-0:31.7.0": (0.41, "A"),
        "1-0:14.7.0": (50.0, "Hz"),
        "1-0:3.8.0": (7000.0, "varh"),
        "7-1:3.0.0": (1234.567, "m3"),
    }
    assert set(result.batch.source.tolist()) == {int(SML_SOURCE)} and set(result.batch.ts.tolist()) == {TS}
    assert result.clock == "received" and not result.issues


def test_entries_that_are_not_readings() -> None:
    result = sml_readings(
        _list(
            _entry("8181c78203ff", None, None, b"EMH"),  # manufacturer
            _entry("0100600500ff", None, None, 0x1C0104),  # a status word without a unit
            _entry("0100510701ff", 8, 0, 120),  # a phase angle (deg): not stored
            _entry("0000600800ff", 255, 0, 77),  # a count
            _entry("0100010800ff", 30, 0, True),  # not a number
            _entry("0100010800ff", 99, 0, 5),  # not a DLMS unit code
        ),
        received_ts=TS,
    )
    assert len(result.batch) == 0
    assert [i.code for i in result.issues] == ["unsupported_unit"]


def test_value_time_beats_sensor_time_beats_receive_time() -> None:
    messages = _list(
        _entry("0100010800ff", 30, 0, 1, val_time=SmlTime(2, TS - 900)),
        _entry("0100020800ff", 30, 0, 2),
        sensor=SmlTime(2, TS - 60),
    )
    result = sml_readings(messages, received_ts=TS)
    assert result.batch.ts.tolist() == [TS - 900, TS - 60] and result.clock == "meter"
    result = sml_readings(_list(_entry("0100010800ff", 30, 0, 1, val_time=SmlTime(1, 5))), received_ts=TS)
    assert result.batch.ts.tolist() == [TS] and result.clock == "received"


def test_without_any_clock_there_is_an_issue_not_a_guess() -> None:
    result = sml_readings(_list(_entry("0100010800ff", 30, 0, 1)))
    assert len(result.batch) == 0 and [i.code for i in result.issues] == ["no_timestamp"]


def test_profile_rows_take_the_period_time() -> None:
    body = GetProfileListRes(
        SERVER, None, 900, (), SmlTime(2, TS), 0, (PeriodEntry(bytes.fromhex("0100010800ff"), 30, -1, 10),)
    )
    result = sml_readings([SmlMessage(b"\x01", 0, 0, body)], received_ts=TS + 5)
    assert result.batch.ts.tolist() == [TS] and _rows(result.batch) == {"1-0:1.8.0": (1.0, "Wh")}


@pytest.mark.parametrize(
    ("raw", "printed"),
    [
        ("0a01454d480000003039", "1 EMH00 00012345"),  # DIN 43863-5:2012, block in decimal
        ("0a014953480c00000001", "1 ISH12 00000001"),
        ("09014553591103b599a5", "1 ESY11 62232997"),  # 2010-07 layout: block in hex
        ("09014d4b531a00000001", "1 MKS1A 00000001"),
        ("06454d48010271582051", "1 EMH 11 00 03163217"),  # 2010-02: 13 digits (libsml issue 78 capture)
        ("00000000000000000000", "00000000000000000000"),
        ("080535342d510177", "080535342d510177"),
        ("0a01656d680000003039", "0a01656d680000003039"),  # lowercase FLAG: not a DIN id
    ],
)
def test_server_ids_as_printed_on_the_nameplate(raw: str, printed: str) -> None:
    assert format_server_id(bytes.fromhex(raw)) == printed


def test_compact_server_id() -> None:
    assert format_server_id(SERVER, compact=True) == "1EMH0000012345"


def test_meter_id_prefers_din_ids_then_text_then_hex() -> None:
    din = _entry("0100600100ff", None, None, SERVER)
    text = _entry("0000600100ff", None, None, b"  MTR-42 ")
    binary = _entry("0100600100ff", None, None, b"\x08\x05\x35")
    assert meter_id(_list(text, server=bytes(10))) == "MTR-42"
    assert meter_id(_list(binary, server=SERVER)) == "1 EMH00 00012345"
    assert meter_id(_list(binary, din, server=bytes(10))) == "1 EMH00 00012345"
    assert meter_id(_list(binary, server=b"\x11\x22")) == "1122"
    open_res = SmlMessage(b"\x00", 0, 0, PublicOpenRes(None, None, None, SERVER))
    assert meter_id([open_res]) == "1 EMH00 00012345"
    assert meter_id([]) is None


def test_the_caller_names_the_meter() -> None:
    result = sml_readings(_list(_entry("0100010800ff", 30, 0, 1)), meter="house-7", received_ts=TS)
    assert result.meter == "house-7" and result.batch.meter.tolist() == ["house-7"]


def test_no_meter_id_is_an_issue_only_when_there_are_values() -> None:
    result = sml_readings(_list(_entry("0100010800ff", 30, 0, 1), server=None), received_ts=TS)
    assert [i.code for i in result.issues] == ["no_meter_id"]
    assert sml_readings([], received_ts=TS).issues == ()


def test_dzg_unsigned_power_quirk_is_opt_in() -> None:
    dzg = bytes.fromhex("0a01445a470002820c6a")
    messages = _list(_entry("0100100700ff", 27, -2, -29912), _entry("0100100700ff", 27, -2, -128), server=dzg)
    assert _rows(sml_readings(messages, received_ts=TS).batch)["1-0:16.7.0"] == (-1.28, "W")
    fixed = sml_readings(messages, received_ts=TS, dzg_unsigned_power=True).batch.value.tolist()
    assert fixed == [356.24, 1.28]  # libsml-testing DZG_DVS-7412.2: 356.24 W sent as -299.12 W
    other = _list(_entry("0100100700ff", 27, -2, -29912))
    assert sml_readings(other, received_ts=TS, dzg_unsigned_power=True).batch.value.tolist() == [-299.12]
