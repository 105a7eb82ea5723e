"""P1 building blocks: the CRC rule of each version, data-line addresses, the object table and value shapes."""

from __future__ import annotations

import pytest

from protocols.p1 import build_telegram, crc16_arc, decode_telegram, parse_timestamp
from protocols.p1.frame import split_frame
from protocols.p1.lines import parse_lines
from protocols.p1.objects import Kind, base_value, classify, demand_history, hex_text, power_failures

CLOCK = "0-0:1.0.0(230315123000W)"


def _frame(text: str) -> tuple[str | None, str | None]:
    frame, issue = split_frame(text.encode(), "M")
    return (frame.crc if frame else None), (issue.code if issue else None)


def test_crc_rule_follows_the_version_line() -> None:
    body = "/ABC5 x\r\n\r\n1-3:0.2.8({v})\r\n1-0:1.8.1(1.000*kWh)\r\n!"
    for version in ("40", "42", "50"):
        text = body.format(v=version)
        assert _frame(text + "\r\n") == (None, "crc_missing")
        assert _frame(text + f"{crc16_arc(text.encode()):04X}\r\n") == ("ok", None)
        assert _frame(text + f"{crc16_arc(text.encode()) ^ 1:04X}\r\n") == (None, "bad_crc")
    assert _frame("/ABC5 x\r\n\r\n1-0:1.8.1(1.000*kWh)\r\n!\r\n") == ("none", None)  # DSMR 2.2/3.0: none
    emucs = "/FLU5\\x\r\n\r\n0-0:96.1.4(50217)\r\n!"
    assert _frame(emucs + "\r\n") == (None, "crc_missing")
    short = "/ABC5 x\r\n\r\n1-3:0.2.8(50)\r\n!"
    crc = crc16_arc(short.encode())
    assert _frame(short + f"{crc:X}\r\n") == ("ok", None) and _frame(short + f"{crc:x}\r\n") == ("ok", None)
    assert _frame(short + "ZZ\r\n") == (None, "bad_crc")


@pytest.mark.parametrize(
    ("line", "obis", "historic", "repaired"),
    [
        ("1-0:1.8.0*255(1*kWh)", "1-0:1.8.0", False, False),
        ("0-0:96.1.255*255(1ESY)", "0-0:96.1.255", False, False),
        ("1-0:31.7.0.255(001*A)", "1-0:31.7.0", False, False),
        ("1-0:1.8.0*01(1*kWh)", "1-0:1.8.0*01", True, False),
        ("1-0:1.8.0&12(1*kWh)", "1-0:1.8.0&12", True, False),
        ("1.8.0(1*kWh)", "1-0:1.8.0", False, False),
        ("C.1.0(123)", "1-0:96.1.0", False, False),
        ("F.F(00)", "F.F", False, False),
        ("1-0:72:32.0(00000)", "1-0:72.32.0", False, True),
        ("1-0:99:97.0(0)()", "1-0:99.97.0", False, True),
    ],
)
def test_addresses(line: str, obis: str, historic: bool, repaired: bool) -> None:
    (item,), bad = parse_lines([line])
    assert (item.obis, item.historic, item.repaired, bad) == (obis, historic, repaired, [])


def test_continuation_lines_and_bad_lines() -> None:
    items, bad = parse_lines(["0-1:24.3.0(230315120000)(00)(60)(1)(0-1:24.2.1)(m3)", "(00947.680)", "(x", "junk"])
    assert items[0].values[-1] == "00947.680" and bad == ["(x", "junk"]
    assert parse_lines(["(1.0)"]) == ([], ["(1.0)"])  # nothing to continue
    assert parse_lines(["1-0:1.8.1"]) == ([], ["1-0:1.8.1"])


def test_classify_and_base_units() -> None:
    assert classify("1-0:1.8.1") == (Kind.READING, "energy_import_t1")
    assert classify("1-0:62.7.0") == (Kind.READING, "power_export_l3")
    assert classify("1-0:72.36.0") == (Kind.COUNTER, "voltage_swells_l3")
    assert classify("0-3:24.2.1")[0] is Kind.MBUS_READING and classify("0-0:24.2.1")[0] is Kind.OTHER
    assert classify("0-0:98.1.0")[0] is Kind.DEMAND_HISTORY and classify("1-1:31.4.0")[0] is Kind.SETTING
    assert base_value("000004.426*kWh") == (4426.0, "Wh") and base_value("1.001*kWh") == (1001.0, "Wh")
    assert base_value("00.244*kW") == (244.0, "W") and base_value("0000.00*kvarh") == (0.0, "varh")
    assert base_value("240.860*GJ") == (240.86e9 / 3600, "Wh")
    assert base_value("00123.456*M3") == (123.456, "m3") and base_value("4.556") == (4.556, "")
    assert base_value("12*furlong") is None and base_value("abc") is None and base_value("") is None
    assert hex_text("4B384547") == "K8EG" and hex_text("1ESY13") == "1ESY13" and hex_text("0000") == "0000"


def test_power_failure_log_shapes() -> None:
    ok = ("2", "0-0:96.7.19", "101208152415W", "0000000240*s", "101208151004W", "0000000301*s")
    log, problem = power_failures(ok)
    assert [(p.end_ts, p.duration_s) for p in log] == [(parse_timestamp("101208152415W"), 240), (1291817404, 301)]
    assert problem is None
    for empty in (("0", "0-0:96.7.19"), ("0", ""), ("",)):
        assert power_failures(empty) == ([], None)
    log, problem = power_failures(("3", "0-0:96.7.19", "180508115740S", "0000013974*s", "180403130035S", "0000001"))
    assert len(log) == 2 and problem == "says 3 entries, holds 2 (2 readable)"
    assert power_failures(("1", "", "", ""))[1] is not None


def test_demand_history_shapes() -> None:
    history = ("2", "1-0:1.6.0", "1-0:1.6.0", "200501000000S", "200423192538S", "03.695*kW")
    peaks, problem = demand_history((*history, "200401000000S", "632525252525W", "00.000*kW"))
    assert [(p.demand_w, p.at_ts) for p in peaks] == [(3695.0, parse_timestamp("200423192538S"))]
    assert problem is None  # a month without a peak
    peaks, problem = demand_history((*history, "200401000000S", "632525252525W", "01.500*kW"))
    assert len(peaks) == 1 and problem == "says 2 months, 1 readable"
    assert demand_history(("230701000000S", "000040.777*kWh")) == ([], None)  # E.ON Hungary: not a history


def test_totals_from_all_tariffs_and_readings_need_units() -> None:
    raw = build_telegram(
        "ABC5 x",
        [CLOCK, "0-0:96.1.1(4142)", "1-0:1.8.1(1.000*kWh)", "1-0:1.8.2(2.000*kWh)", "1-0:1.8.3(3.000*kWh)",
         "1-0:2.8.1(1.500*kWh)", "1-0:1.7.0(0.5)", "1-0:13.7.0(0.98)", "1-0:32.7.0(abc*V)", "0-0:96.50.68(ON)",
         "1-0:31.7.0(12*furlong)"],
        crc=False,
    )  # fmt: skip
    t = decode_telegram(raw)
    r = {x.obis: x.value for x in t.readings}
    assert t.meter == "AB" and r["1-0:1.8.0"] == 6000.0 and "1-0:2.8.0" not in r  # one tariff is no total
    assert "1-0:1.7.0" not in r and r["1-0:13.7.0"] == 0.98  # a bare number has no scale; power factors are bare
    assert {i.code: i.extra.get("severity") for i in t.issues} == {"bad_value": None, "unknown_unit": "info"}
    assert t.states == {"0-0:96.1.1": "4142"} and t.objects["0-0:96.50.68"] == ("ON",)


def test_timestamps_use_the_flag_for_the_autumn_hour_only() -> None:
    assert parse_timestamp("231029023000S") == parse_timestamp("231029023000W") - 3600
    assert parse_timestamp("200305122139S") == parse_timestamp("200305122139W")  # a stale flag: the wall clock
    assert parse_timestamp("700101010000W") == 0  # what meters write for "never"
    for bad in ("231301120000W", "2301011200", "23010112000X", ""):
        with pytest.raises(ValueError):
            parse_timestamp(bad)
