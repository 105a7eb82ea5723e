"""EN 13757-3 records: DIF/DIFE coordinates, data codings and VIF tables round-trip through the encoder; special
DIFs; bad data gives issues, never exceptions; records become readings in base units."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.mbus import DeviceHeader, encode_record, mbus_readings, parse_records
from protocols.mbus.datafield import decode_bcd, encode_bcd, encode_date_g, encode_datetime_f

FUNCTIONS = ("instantaneous", "maximum", "minimum", "error")


@settings(max_examples=300, derandomize=True)
@given(
    storage=st.integers(0, 2**33 - 1), tariff=st.integers(0, 2**8 - 1), subunit=st.integers(0, 15),
    function=st.sampled_from(FUNCTIONS), value=st.integers(-(2**31), 2**31 - 1),
)  # fmt: skip
def test_coordinates_round_trip(storage: int, tariff: int, subunit: int, function: str, value: int) -> None:
    raw = encode_record(b"\x03", value, storage=storage, tariff=tariff, subunit=subunit, function=function)
    block = parse_records(raw)
    (r,) = block.records
    assert (r.storage, r.tariff, r.subunit, r.function) == (storage, tariff, subunit, function)
    assert r.quantity == "energy" and r.unit == "Wh" and r.value == float(value) and not block.issues


@settings(max_examples=200, derandomize=True)
@given(value=st.integers(0, 10**8 - 1), length=st.sampled_from([4]))
def test_bcd_round_trip(value: int, length: int) -> None:
    assert decode_bcd(encode_bcd(value, length)) == value
    assert decode_bcd(encode_bcd(-(value % 10**7), length)) == -(value % 10**7)


@pytest.mark.parametrize(
    ("vib", "field", "raw", "quantity", "unit", "value"),
    [
        (b"\x06", 0x04, 12_345, "energy", "Wh", 12_345_000.0),  # kWh
        (b"\x0e", 0x04, 7, "energy", "J", 7_000_000.0),  # MJ
        (b"\x13", 0x0C, 1_234, "volume", "m3", 1.234),  # litres, BCD
        (b"\x22", 0x02, 3, "on_time", "s", 10_800.0),  # hours
        (b"\x2b", 0x02, -500, "power", "W", -500.0),
        (b"\x3b", 0x03, 543, "volume_flow", "m3/h", 0.543),
        (b"\x43", 0x02, 5, "volume_flow", "m3/h", 0.03),  # 5e-4 m3/min
        (b"\x59", 0x02, 10_169, "flow_temperature", "degC", 101.69),
        (b"\x5d", 0x02, 4_616, "return_temperature", "degC", 46.16),
        (b"\x61", 0x02, 5_553, "temperature_difference", "K", 55.53),
        (b"\x66", 0x01, -45, "external_temperature", "degC", -4.5),
        (b"\x69", 0x01, 12, "pressure", "bar", 0.12),
        (b"\xfd\x48", 0x02, 2_301, "voltage", "V", 230.1),
        (b"\xfd\x5a", 0x02, 157, "current", "A", 1.57),
        (b"\xfb\x00", 0x04, 42, "energy", "Wh", 4_200_000.0),  # 0.1 MWh
        (b"\xfb\x09", 0x04, 3, "energy", "J", 3e9),  # GJ
        (b"\xfb\x0e", 0x04, 1, "reserved", "", 1.0),
        (b"\x83\x3c", 0x04, 900, "energy", "Wh", 900.0),  # export
        (b"\x93\x74", 0x04, 5, "volume", "m3", 5e-5),  # multiplicative correction 10^-2 on litres
    ],
)
def test_vif_tables(vib: bytes, field: int, raw: int, quantity: str, unit: str, value: float) -> None:
    (r,) = parse_records(encode_record(vib, raw, field=field)).records
    assert (r.quantity, r.unit) == (quantity, unit)
    assert r.value == pytest.approx(value)


def test_dates_text_and_specials() -> None:
    data = (
        encode_record(b"\x6c", encode_date_g(date(2024, 2, 29)), field=0x02)
        + encode_record(b"\x6d", encode_datetime_f(datetime(2023, 12, 31, 23, 59)), field=0x04)
        + b"\x2f\x2f"
        + encode_record(b"\xfd\x0c", "MULTICAL", field=0x0D)
        + encode_record(b"\x78", 12345678, field=0x0C)
        + b"\x1f\x01\x02"
    )
    block = parse_records(data)
    assert [r.value for r in block.records] == ["2024-02-29", "2023-12-31T23:59:00", "MULTICAL", "12345678"]
    assert block.more_follows and block.manufacturer_data == b"\x01\x02"


def test_plain_text_vif() -> None:
    (r,) = parse_records(bytes.fromhex("0c7c03796d7601020304")).records  # unit "vmy", sent last character first
    assert r.quantity == "plain_text" and r.unit == "vmy" and r.value == 4_030_201.0


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\x04\x13\x01", "truncated_record"),
        (b"\x84" + b"\x80" * 10 + b"\x00\x13\x00\x00\x00\x00", "too_many_difes"),
        (b"\x04\x93" + b"\x80" * 10 + b"\x00\x00\x00\x00\x00", "too_many_vifes"),
        (b"\x3f\x00", "reserved_dif"),
        (b"\x0d\x13\xf8", "reserved_lvar"),
        (b"\x0c\x13\xaa\xaa\xaa\xaa", "bad_value"),
        (b"\x04\x6d\x80\x00\x21\x1c", "bad_value"),  # type F with the invalid bit
    ],
)
def test_bad_data_gives_an_issue(data: bytes, code: str) -> None:
    assert code in [i.code for i in parse_records(data).issues]


def test_records_to_readings() -> None:
    header = DeviceHeader("12345678", "KAM", 1, 0x04)
    data = (
        encode_record(b"\x0e", 36, field=0x04)  # 36 MJ = 10 kWh
        + encode_record(b"\x06", 9, storage=1)  # historic: not a reading
        + encode_record(b"\x2b", 1500, function="maximum")  # maximum: not a reading
        + encode_record(b"\x59", 7000, field=0x02)
        + encode_record(b"\x06", 4, tariff=2)
    )
    readings = mbus_readings(header, parse_records(data).records, received_ts=1_700_000_000)
    batch = readings.batch
    assert list(batch.obis) == ["6-0:1.8.0", "6-0:10.7.0", "6-0:1.8.2"]
    assert list(batch.value) == [10_000.0, 70.0, 4_000.0] and list(batch.unit) == ["Wh", "degC", "Wh"]
    assert set(batch.meter) == {"12345678"} and set(batch.ts) == {1_700_000_000} and len(readings.sources) == 3
