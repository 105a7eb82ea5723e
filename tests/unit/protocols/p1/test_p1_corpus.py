"""The P1 corpus (tests/data/p1, see SOURCES.md): every telegram decodes as corpus.json says (meter, readings,
issues, exit code), and the shapes that real meters send give the values their lines hold."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from amiflow_app.cli import main
from protocols.decode import decode_bytes
from protocols.p1 import P1Telegram, decode_telegram, describe_capture, is_informational, parse_timestamp

DATA = Path(__file__).resolve().parents[3] / "data" / "p1"
CORPUS = json.loads((DATA / "corpus.json").read_text())
NOW = 1_700_000_000


def _t(name: str) -> P1Telegram:
    return decode_telegram((DATA / name).read_bytes(), received_ts=NOW)


def _r(t: P1Telegram) -> dict[str, tuple[float, str, int]]:
    return {r.obis: (r.value, r.unit, r.ts) for r in t.readings}


def test_the_corpus_is_complete_and_attributed() -> None:
    files = {p.name for p in DATA.iterdir()} - {"SOURCES.md", "corpus.json", ".gitattributes"}
    assert files == {e["file"] for e in CORPUS}
    sources = (DATA / "SOURCES.md").read_text()
    makers = {e["maker"].split(" ")[0] for e in CORPUS}
    assert {"Iskra", "Kaifa", "Kamstrup", "Landis+Gyr", "Sagemcom", "EasyMeter", "Itron"} <= makers
    for e in CORPUS:
        assert e["file"] in sources and e["licence"] and e["source"]


@pytest.mark.parametrize("entry", CORPUS, ids=[e["file"] for e in CORPUS])
def test_each_telegram_decodes_as_the_corpus_says(entry: dict[str, Any]) -> None:
    result = describe_capture((DATA / entry["file"]).read_bytes(), received_ts=NOW)
    assert result["meter"] == entry["meter"]
    assert len(result["readings"]) == entry["readings"]
    assert sorted({i["code"] for i in result["issues"]}) == entry["issues"]
    broken = [i for i in result["issues"] if i.get("severity") != "info"]
    assert bool(broken) == (entry["exit"] == 1) == entry["file"].startswith("broken_")


@pytest.mark.parametrize("name", ["dsmr_parser_v22_iskra_mt382.txt", "broken_v50_crc_missing.txt"])
def test_decode_p1_exits_0_when_merely_unusual_and_1_when_broken(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["decode", "p1", str(DATA / name)])
    out = json.loads(capsys.readouterr().out)
    (entry,) = [e for e in CORPUS if e["file"] == name]
    assert code == entry["exit"]
    assert out["frames"] and sorted({i["code"] for i in out["issues"]}) == entry["issues"]


def test_dsmr22_without_clock_is_stamped_with_the_receive_time_and_says_so() -> None:
    t = _t("smeterd_v22_iskra_me382_1004.txt")
    assert t.clock == "receive_time" and t.ts == NOW and t.crc == "none" and t.version is None
    r = _r(t)
    assert r["1-0:1.8.1"] == (608400.0, "Wh", NOW) and r["1-0:1.8.0"] == (1098742.0, "Wh", NOW)
    assert r["1-0:1.7.0"] == (1510.0, "W", NOW)
    assert r["0-1:24.2.1"] == (947.68, "m3", parse_timestamp("130810180000"))  # the gas meter's own hour
    assert [i.code for i in t.issues] == ["receive_time"] and is_informational(t.issues[0])
    assert t.states["0-0:17.0.0"] == "0999.00*kW" and "0-0:17.0.0" not in r  # a threshold, not a reading
    assert t.mbus[0].kind == "gas" and t.mbus[0].valve == "1"
    result = decode_bytes("p1", (DATA / "smeterd_v22_iskra_me382_1004.txt").read_bytes())
    assert result["frames"][0]["clock"] == "receive_time" and result["issues"][0]["severity"] == "info"


def test_old_gas_lines_on_any_channel_and_with_their_obis_as_written() -> None:
    assert _r(_t("dsmr_tools_v22_iskra_mt382_channel2_gas.txt"))["0-2:24.2.1"][:2] == (13368.864, "m3")
    xemex = _t("dsmr_tools_v22_xemex_landis_gyr.txt")
    assert _r(xemex)["0-1:24.2.0"] == (5271.144, "m3", parse_timestamp("190218120000"))


def test_no_equipment_identifier_falls_back_to_the_header() -> None:
    t = _t("handmade_v30_no_equipment_id.txt")
    assert t.meter == "KMP5 KA6U001234567890" and t.meter_id_from == "header"
    codes = {i.code: is_informational(i) for i in t.issues}
    assert codes == {"meter_id_from_header": True, "receive_time": True}
    assert _r(t)["0-1:24.2.1"][:2] == (3456.789, "m3")
    austria = _t("dsmr_parser_sagemcom_t210d_austria.txt")
    assert austria.meter == "EST5\\253710000_A" and _r(austria)["1-0:4.8.0"][:2] == (3897726.0, "varh")


def test_f_groups_current_and_historic_and_the_spec_typo() -> None:
    t = _t("handmade_iec_style_f_groups.txt")
    r = _r(t)
    assert t.meter == "30123456" and t.clock == "meter" and t.ts == parse_timestamp("230315123000W")
    assert r["1-0:1.8.0"][:2] == (1234567.8, "Wh") and r["1-0:14.7.0"][:2] == (49.98, "Hz")
    assert t.objects["1-0:1.8.0*01"] == ("001200.0000*kWh",) and t.objects["1-0:1.8.0&02"] == ("001100.0000*kWh",)
    assert not any("*" in o or "&" in o for o in r)  # billing periods are not current readings
    easy = _t("dsmr_parser_easymeter_q3d_b1024.txt")
    assert easy.meter == "1ESY1313002565" and _r(easy)["1-0:1.8.0"][0] == pytest.approx(52185782.5309)
    spec = _t("handmade_v42_f_groups_and_spec_typo.txt")
    assert spec.counters["1-0:72.32.0"] == 3 and _r(spec)["1-0:71.7.0"][:2] == (1.0, "A")
    assert [i.code for i in spec.issues] == ["obis_repaired"]


def test_dsmr5_objects_logs_counters_and_four_mbus_channels() -> None:
    t = _t("handmade_v50_four_mbus_channels.txt")
    assert t.version == "50" and t.crc == "ok" and t.issues == ()
    assert [(p.end_ts, p.duration_s) for p in t.power_failures] == [
        (parse_timestamp("230301152415W"), 240),
        (parse_timestamp("230214081004W"), 3601),
    ]
    assert t.counters["0-0:96.7.21"] == 4 and t.counters["1-0:52.36.0"] == 3 and t.states["0-0:96.14.0"] == "0001"
    assert t.texts["0-0:96.13.0"] == "Onderhoud 16 maart 09:00-11:00"
    kinds = [(d.channel, d.kind, d.equipment_id) for d in t.mbus]
    assert kinds == [(1, "gas", "G0012345678901234"), (2, "water", "W0012345678901234"),
                     (3, "heat", "H0012345678901234"), (4, "electricity", "S0012345678901234")]  # fmt: skip
    r = _r(t)
    assert r["0-2:24.2.1"] == (123.456, "m3", parse_timestamp("230315122000W"))
    assert r["0-3:24.2.1"][0] == pytest.approx(12.345e9 / 3600) and r["0-3:24.2.1"][1] == "Wh"  # GJ of heat in Wh
    assert r["0-4:24.2.1"][:2] == (456789.0, "Wh") and r["1-0:61.7.0"][:2] == (360.0, "W")


def test_emucs_peak_demand_history_and_uncorrected_gas() -> None:
    t = _t("dsmr_parser_emucs_fluvius.txt")
    assert t.version == "50217" and t.crc == "ok"
    r = _r(t)
    assert r["1-0:1.4.0"] == (2351.0, "W", t.ts)
    assert r["1-0:1.6.0"] == (2589.0, "W", parse_timestamp("200509134558S"))  # the peak, at its time
    assert [p.demand_w for p in t.demand_peaks] == [3695.0, 5980.0, 4318.0]
    assert r["0-1:24.2.3"][:2] == (112.384, "m3") and t.mbus[1].kind == "water"
    alt = _t("dsmr_parser_emucs_fluvius_alt.txt")  # a month without a peak (before the meter came): skipped
    assert len(alt.demand_peaks) == 3 and alt.issues == ()


def test_an_empty_mbus_channel_is_kept_on_the_device_not_stored() -> None:
    t = _t("dsmr_parser_v50_iskra_am550_two_mbus.txt")
    first = t.mbus[0]
    assert first.reading is not None and (first.reading.value, first.reading.unit) == (0.0, "")
    assert "0-1:24.2.1" not in _r(t) and _r(t)["0-2:24.2.1"][:2] == (246.138, "m3")


def test_an_iec_readout_block_of_an_itron_meter() -> None:
    t = _t("handmade_itron_ace3000_readout.txt")
    assert t.meter == "0123456789012345" and _r(t)["1-0:1.8.0"][:2] == (12345600.0, "Wh")
    result = decode_bytes("iec62056-21", (DATA / "handmade_itron_ace3000_readout.txt").read_bytes())
    assert result["meter"] == "0123456789012345" and result["frames"][-1]["bcc_ok"] is True
    assert [(r["obis"], r["value"]) for r in result["readings"]] == [("1-0:1.8.0", 12345600.0), ("1-0:2.8.0", 987600.0)]


def test_broken_telegrams_give_no_readings_or_say_what_is_missing() -> None:
    for name, code in (("broken_v50_bit_flip.txt", "bad_crc"), ("broken_emucs_crc_missing.txt", "crc_missing")):
        t = _t(name)
        assert t.readings == () and [i.code for i in t.issues] == [code]
    cut = describe_capture((DATA / "broken_dsmr_tools_v50_iskra_am550_truncated.txt").read_bytes())
    assert len(cut["frames"]) == 1 and [i["code"] for i in cut["issues"]] == ["truncated"]
