"""The corpus (tests/data/mbus, SOURCES.md) decodes as recorded in expected.json and to the values its sources state."""

from __future__ import annotations

import json
from types import ModuleType

import pytest

from protocols.mbus import KeyRing, ShortFrame, decode_mbus_capture, decode_wmbus


def _summary(result: dict[str, object]) -> dict[str, object]:
    device = result["device"]
    assert device is None or isinstance(device, dict)
    readings = result["readings"]
    assert isinstance(readings, list)
    return {
        "device": [device["id"], device["manufacturer"], device["medium"]] if device else None,
        "records": len(result["records"]),  # type: ignore[arg-type]
        "telegrams": result["telegrams"],
        "issues": sorted({i["code"] for i in result["issues"]}),  # type: ignore[attr-defined]
        "readings": {r["obis"]: f"{r['value']!r} {r['unit']}" for r in readings},
    }


def test_corpus_decodes_as_expected(corpus: ModuleType) -> None:
    expected = json.loads((corpus.DATA / "expected.json").read_text())
    frames = corpus.frames()
    assert set(expected) == {name for name, _ in frames}
    for name, frame_hex in frames:
        result = decode_mbus_capture(bytes.fromhex(frame_hex), keys=corpus.keys(name), received_ts=1_700_000_000)
        assert _summary(result) == expected[name], name


def test_many_makers_and_media(corpus: ModuleType) -> None:
    expected = json.loads((corpus.DATA / "expected.json").read_text())
    makers = {v["device"][1] for v in expected.values() if v["device"]}
    media = {v["device"][2] for v in expected.values() if v["device"]}
    assert {"KAM", "LUG", "EFE", "HYD", "SON", "ACW", "TCH", "ELS", "ABB", "ZRI"} <= makers
    assert {"heat", "water", "gas", "electricity", "warm_water", "cold_water"} <= media


def test_stated_values_kamstrup_multical_601(corpus: ModuleType) -> None:
    # libmbus's normalised decode states these (kamstrup_multical_601.norm.xml)
    result = decode_mbus_capture(bytes.fromhex(dict(corpus.frames())["libmbus/kamstrup_multical_601.hex"]))
    assert result["device"]["id"] == "06855817" and result["device"]["manufacturer"] == "KAM"
    values = {
        (r["quantity"], r["function"], r["storage"]): r["value"]
        for r in result["records"]
        if r["tariff"] == r["subunit"] == 0
    }
    assert values[("energy", "instantaneous", 0)] == 37_351_000.0
    assert values[("volume", "instantaneous", 0)] == 561.08
    assert values[("flow_temperature", "instantaneous", 0)] == 101.69
    assert values[("power", "maximum", 0)] == 44_800.0
    assert values[("datetime", "instantaneous", 0)] == "2011-01-05T15:26:00"
    assert values[("energy", "instantaneous", 1)] == 33_361_000.0
    assert {r["obis"] for r in result["readings"]} >= {"6-0:1.8.0", "6-0:2.8.0", "6-0:10.7.0", "6-0:1.7.0"}


def test_stated_values_wireless(corpus: ModuleType) -> None:
    frames = dict(corpus.frames())
    zri = decode_wmbus(
        bytes.fromhex(frames["wmbus/zri_mode5_mbus-parser.hex"]), keys=corpus.keys("zri_mode5_mbus-parser.hex")
    )
    assert zri.decrypted and zri.header is not None and zri.header.ident == "14639203"
    assert zri.records[0].quantity == "volume" and zri.records[0].value == 67.329
    lse = decode_mbus_capture(bytes.fromhex(frames["wmbus/lse_warm_water_jmbus.hex"]))
    assert lse["device"]["id"] == "58511882" and lse["device"]["version"] == 44
    assert lse["device"]["medium"] == "warm_water" and lse["device"]["manufacturer"] == "LSE"


def test_no_key_and_wrong_key(corpus: ModuleType) -> None:
    frame = bytes.fromhex(dict(corpus.frames())["wmbus/zri_mode5_mbus-parser.hex"])
    assert [i.code for i in decode_wmbus(frame).issues] == ["encrypted"]
    wrong = KeyRing({"14639203": "00" * 16})
    assert [i.code for i in decode_wmbus(frame, keys=wrong).issues] == ["bad_key"]
    assert "F8B2" not in repr(corpus.keys("zri_mode5_mbus-parser.hex"))


@pytest.mark.parametrize("name", ["libmbus/ELV-Elvaco-CMa10.hex", "libmbus/tch_telegramm1.hex"])
def test_more_records_follow(corpus: ModuleType, name: str) -> None:
    result = decode_mbus_capture(bytes.fromhex(dict(corpus.frames())[name]))
    assert result["frames"][0]["more_follows"] is True


def test_decode_command_joins_a_multi_telegram_readout() -> None:
    from protocols.decode import decode_bytes
    from simulators.mbus_devices import SimSlave

    heat = SimSlave("heat", 1, "12345678")
    raw = b"".join(heat.answer(ShortFrame(0x7B if i % 2 == 0 else 0x5B, 1), 1.75e9) or b"" for i in range(2))
    result = decode_bytes("mbus", b"\x00\xe5" + raw)
    assert result["telegrams"] == 2 and result["device"]["id"] == "12345678"
    assert [f["kind"] for f in result["frames"]] == ["ack", "rsp_ud", "rsp_ud"]
    assert {r["function"] for r in result["records"]} == {"instantaneous", "maximum"}
    assert [i["code"] for i in result["issues"]] == ["skipped_bytes"]
    text = decode_bytes("mbus", raw.hex(" ").encode())  # hex text: the same
    assert text["records"] == result["records"]
