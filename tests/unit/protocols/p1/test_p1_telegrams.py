"""DSMR P1: the DSMR 5 example telegram, CRC-16/ARC, timestamps, DSMR 2.2, splitter streams split at every byte."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from amiflow.types import Source
from protocols.p1 import (
    NEED_DATA,
    P1Splitter,
    build_telegram,
    crc16_arc,
    dsmr5_telegram,
    format_timestamp,
    is_informational,
    parse_telegram,
    parse_timestamp,
)

# The DSMR 5.0 example telegram (as in the P1 companion standard's examples and dsmr-parser's test data).
V5 = (
    b"/ISk5\\2MT382-1000\r\n\r\n1-3:0.2.8(50)\r\n0-0:1.0.0(170102192002W)\r\n"
    b"0-0:96.1.1(4B384547303034303436333935353037)\r\n1-0:1.8.1(000004.426*kWh)\r\n1-0:1.8.2(000002.399*kWh)\r\n"
    b"1-0:2.8.1(000002.444*kWh)\r\n1-0:2.8.2(000000.000*kWh)\r\n0-0:96.14.0(0002)\r\n1-0:1.7.0(00.244*kW)\r\n"
    b"1-0:2.7.0(00.000*kW)\r\n0-0:96.7.21(00013)\r\n0-0:96.7.9(00000)\r\n1-0:99.97.0(0)(0-0:96.7.19)\r\n"
    b"1-0:32.32.0(00000)\r\n1-0:52.32.0(00000)\r\n1-0:72.32.0(00000)\r\n1-0:32.36.0(00000)\r\n"
    b"1-0:52.36.0(00000)\r\n1-0:72.36.0(00000)\r\n0-0:96.13.0()\r\n1-0:32.7.0(0230.0*V)\r\n1-0:52.7.0(0230.0*V)\r\n"
    b"1-0:72.7.0(0229.0*V)\r\n1-0:31.7.0(0.48*A)\r\n1-0:51.7.0(0.44*A)\r\n1-0:71.7.0(0.86*A)\r\n"
    b"1-0:21.7.0(00.070*kW)\r\n1-0:41.7.0(00.032*kW)\r\n1-0:61.7.0(00.142*kW)\r\n1-0:22.7.0(00.000*kW)\r\n"
    b"1-0:42.7.0(00.000*kW)\r\n1-0:62.7.0(00.000*kW)\r\n0-1:24.1.0(003)\r\n"
    b"0-1:96.1.0(3232323241424344313233343536373839)\r\n0-1:24.2.1(170102161005W)(00000.107*m3)\r\n"
    b"0-2:24.1.0(003)\r\n0-2:96.1.0()\r\n!6EEE\r\n"
)

# DSMR 2.2 (no CRC, gas on two lines), after the DSMR 2.2 example
V22 = (
    b"/ISk5\\2MT382-1004\r\n\r\n0-0:96.1.1(00000000000000)\r\n1-0:1.8.1(00001.001*kWh)\r\n1-0:1.8.2(00001.001*kWh)\r\n"
    b"1-0:2.8.1(00001.001*kWh)\r\n1-0:2.8.2(00001.001*kWh)\r\n0-0:96.14.0(0001)\r\n1-0:1.7.0(0001.01*kW)\r\n"
    b"1-0:2.7.0(0000.00*kW)\r\n0-0:17.0.0(0999.00*kW)\r\n0-0:96.3.10(1)\r\n0-0:96.13.1()\r\n0-0:96.13.0()\r\n"
    b"0-1:24.1.0(3)\r\n0-1:96.1.0(000000000000)\r\n0-1:24.3.0(161107190000)(00)(60)(1)(0-1:24.2.1)(m3)\r\n"
    b"(00001.001)\r\n0-1:24.4.0(1)\r\n!\r\n"
)


def _by_obis(batch: object) -> dict[str, tuple[float, str, int]]:
    return {o: (v, u, t) for o, v, u, t in zip(batch.obis, batch.value, batch.unit, batch.ts, strict=True)}  # type: ignore[attr-defined]


def test_crc16_arc_check_value() -> None:
    assert crc16_arc(b"123456789") == 0xBB3D
    assert crc16_arc(V5[: V5.index(b"!") + 1]) == 0x6EEE


def test_dsmr5_example() -> None:
    batch, issues = parse_telegram(V5)
    assert issues == []
    assert set(batch.meter) == {"K8EG004046395507"}
    assert set(batch.source) == {Source.P1}
    r = _by_obis(batch)
    ts = parse_timestamp("170102192002W")
    assert ts == 1483381202  # 2017-01-02 19:20:02 CET = 18:20:02 UTC
    assert r["1-0:1.8.1"] == (4426.0, "Wh", ts)
    assert r["1-0:1.8.2"] == (2399.0, "Wh", ts)
    assert r["1-0:1.8.0"] == (6825.0, "Wh", ts)
    assert r["1-0:2.8.0"] == (2444.0, "Wh", ts)
    assert r["1-0:1.7.0"][:2] == (244.0, "W")
    assert r["1-0:72.7.0"][:2] == (229.0, "V")
    assert r["1-0:71.7.0"][:2] == (0.86, "A")
    assert r["0-1:24.2.1"] == (0.107, "m3", parse_timestamp("170102161005W"))
    assert "0-0:96.14.0" not in r and "1-0:32.32.0" not in r  # counters are not readings
    named, _ = parse_telegram(V5, meter="M7")
    assert set(named.meter) == {"M7"}


def test_bad_crc_and_missing_crc_give_issues_not_readings() -> None:
    bad = V5.replace(b"000004.426", b"000004.427")
    batch, issues = parse_telegram(bad, meter="M1")
    assert len(batch) == 0 and [i.code for i in issues] == ["bad_crc"] and issues[0].raw == bad
    batch, issues = parse_telegram(V5.replace(b"!6EEE", b"!"), meter="M1")
    assert len(batch) == 0 and issues[0].code == "crc_missing"
    batch, issues = parse_telegram(V5.replace(b"!6EEE", b"!6XEE"))
    assert issues[0].code == "bad_crc"
    for junk in (b"", b"garbage", b"/no end", b"!\r\n/"):
        batch, issues = parse_telegram(junk)
        assert len(batch) == 0 and issues[0].code == "no_telegram"


def test_dsmr22_without_crc_and_no_clock() -> None:
    batch, issues = parse_telegram(V22, meter="M22")
    assert len(batch) == 0 and issues[0].code == "no_timestamp"
    batch, issues = parse_telegram(V22, meter="M22", received_ts=1_700_000_000)
    assert [(i.code, is_informational(i)) for i in issues] == [("receive_time", True)]
    assert set(batch.ts) >= {1_700_000_000}
    r = _by_obis(batch)
    assert r["1-0:1.8.0"][:2] == (2002.0, "Wh")
    assert r["1-0:1.7.0"][:2] == (1010.0, "W")
    assert r["0-1:24.2.1"] == (1.001, "m3", parse_timestamp("161107190000"))
    assert "0-0:17.0.0" not in r


def test_bad_lines_and_timestamps_are_issues() -> None:
    raw = build_telegram("X", ["0-0:1.0.0(230101120000W)", "1-0:1.8.1(1.000*kWh)", "nonsense line"])
    batch, issues = parse_telegram(raw, meter="M")
    assert [i.code for i in issues] == ["bad_line"] and _by_obis(batch)["1-0:1.8.1"][0] == 1000.0
    raw = build_telegram("X", ["0-0:1.0.0(231301120000W)", "1-0:1.8.1(1.000*kWh)"])
    batch, issues = parse_telegram(raw, meter="M")
    assert len(batch) == 0 and issues[0].code == "bad_timestamp"
    raw = build_telegram("X", ["0-0:1.0.0(230101120000W)", "1-0:1.8.1(1.000*kWh)"])
    batch, issues = parse_telegram(raw)
    assert len(batch) == 0 and issues[0].code == "no_meter_id"


def test_timestamp_summer_winter_and_dst() -> None:
    assert parse_timestamp("230701120000S") == 1688205600  # 10:00 UTC
    assert parse_timestamp("230101120000W") == 1672570800  # 11:00 UTC
    assert parse_timestamp("230101120000") == 1672570800  # no flag: Europe/Amsterdam rules
    for ts in (1672570800, 1688205600, 1698541200, 1698544800):  # incl. both 02:xx hours of the autumn change
        assert parse_timestamp(format_timestamp(ts)) == ts


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1_500_000_000, 2_000_000_000),
    st.integers(0, 10**9),
    st.integers(0, 10**9),
    st.integers(0, 20_000),
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=20),
)
def test_builder_roundtrip(ts: int, t1: int, t2: int, power: int, ident: str) -> None:
    raw = dsmr5_telegram(equipment_id=ident, ts=ts, import_wh=(t1, t2), power_w=(power, 0), gas_m3=(12.5, ts - 300))
    batch, issues = parse_telegram(raw)
    assert issues == []
    r = _by_obis(batch)
    assert set(batch.meter) == {ident}
    assert r["1-0:1.8.1"] == (t1, "Wh", ts) and r["1-0:1.8.2"][0] == t2 and r["1-0:1.8.0"][0] == t1 + t2
    assert r["1-0:1.7.0"][0] == power
    assert r["0-1:24.2.1"] == (12.5, "m3", ts - 300)


def _split_all(stream: bytes, cuts: list[int]) -> tuple[list[bytes], int]:
    s = P1Splitter(max_bytes=4096)
    out: list[bytes] = []
    prev = 0
    for cut in [*cuts, len(stream)]:
        s.receive_data(stream[prev:cut])
        prev = cut
        while (t := s.next_event()) is not NEED_DATA:
            out.append(t)
    return out, s.discarded


def test_splitter_at_every_byte_boundary() -> None:
    stream = b"xx\r\n!garbage" + V5 + V5
    for cut in range(len(stream) + 1):
        out, _ = _split_all(stream, [cut])
        assert out == [V5, V5], cut
    out, _ = _split_all(stream, list(range(1, len(stream))))  # one byte at a time
    assert out == [V5, V5]


def test_splitter_resyncs_after_truncation_and_overflow() -> None:
    truncated = V5[:300]
    out, discarded = _split_all(truncated + V5, [])
    assert out == [V5] and discarded == 300
    out, _ = _split_all(b"/" + b"a" * 10_000 + V5, [])
    assert out == [V5]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_splitter_never_hangs_on_garbage(junk: bytes) -> None:
    out, _ = _split_all(junk + V5, [len(junk) // 2])
    assert out and out[-1] == V5
    for t in out:
        parse_telegram(t)  # never raises


def test_values_are_float64() -> None:
    batch, _ = parse_telegram(V5)
    assert batch.value.dtype == np.float64 and batch.ts.dtype == np.int64
