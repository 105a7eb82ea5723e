"""DSMR P1 checked by dsmr-parser (MIT) in a separate process: our builder's telegrams, every telegram of the corpus
in tests/data/p1 (each object dsmr-parser's specification finds must decode to the same value, unit, time and CRC
verdict), the object table against dsmr-parser's OBIS references, and a P1 stream read from a pty."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tty
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from amiflow.uri import parse_meter_uri
from protocols.p1 import NEED_DATA, P1Splitter, P1Telegram, decode_telegram, dsmr5_telegram, parse_telegram
from protocols.p1.lines import parse_lines
from protocols.p1.objects import Kind, classify
from protocols.transport import open_link

DATA = Path(__file__).resolve().parents[1] / "data" / "p1"
CORPUS = json.loads((DATA / "corpus.json").read_text())
PEER_SCRIPT = Path(__file__).with_name("dsmr_parser_peer.py")
RECEIVED_TS = 1_700_000_000
_UNITS = {  # dsmr-parser's unit -> (factor to our base unit, base unit)
    "kWh": (Decimal(1000), "Wh"),
    "Wh": (Decimal(1), "Wh"),
    "kW": (Decimal(1000), "W"),
    "W": (Decimal(1), "W"),
    "kvarh": (Decimal(1000), "varh"),
    "varh": (Decimal(1), "varh"),
    "kvar": (Decimal(1000), "var"),
    "var": (Decimal(1), "var"),
    "V": (Decimal(1), "V"),
    "A": (Decimal(1), "A"),
    "Hz": (Decimal(1), "Hz"),
    "m3": (Decimal(1), "m3"),
    "GJ": (Decimal(10**9) / Decimal(3600), "Wh"),
}


def _peer(args: list[str], payload: Any = None) -> Any:
    proc = subprocess.run(
        [sys.executable, str(PEER_SCRIPT), *args],
        input=json.dumps(payload) if payload is not None else "",
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(proc.stdout)


def _num(value: Any) -> Decimal | None:
    return Decimal(value["decimal"]) if isinstance(value, dict) and "decimal" in value else None


def _ours(t: P1Telegram, address: str) -> tuple[str, bool, tuple[str, ...]]:
    (line,), _ = parse_lines([f"{address}()"])
    return line.obis, line.historic, t.objects.get(line.obis, ())


def _check_cosem(t: P1Telegram, obj: dict[str, Any], where: str) -> None:
    obis, historic, values = _ours(t, obj["address"])
    assert values, f"{where}: {obis} not decoded"
    ours_value, _, ours_unit = values[0].partition("*")
    value, unit = obj["value"], obj["unit"]
    if isinstance(value, dict) and "ts" in value:
        assert obis == "0-0:1.0.0" and t.ts == value["ts"], where
    elif (num := _num(value)) is not None:
        assert Decimal(ours_value) == num and (ours_unit or None) == unit, where
        if classify(obis)[0] is Kind.READING and unit in _UNITS and not historic:
            factor, base = _UNITS[unit]
            found = [(r.value, r.unit) for r in t.readings if r.obis == obis and r.ts == t.ts]
            assert found == [(float(num * factor), base)], where
    elif isinstance(value, int):
        assert int(ours_value) == value, where
    else:
        assert (ours_value or None) == value, where


def _check_mbus(t: P1Telegram, obj: dict[str, Any], where: str) -> None:
    num, ts = _num(obj["value"]), (obj["ts"] or {}).get("ts")
    if ts is None or num is None:
        return  # dsmr-parser could not read it either
    factor, base = _UNITS.get(obj["unit"] or "", (Decimal(1), ""))
    want = (float(num * factor), base, ts)
    obis, _, _ = _ours(t, obj["address"])
    if obis == "1-0:1.6.0":  # maximum demand this month: a reading at the time of the peak
        assert want in [(r.value, r.unit, r.ts) for r in t.readings if r.obis == obis], where
        return
    channel = int(obis.split(":")[0].split("-")[1])
    (dev,) = [d for d in t.mbus if d.channel == channel]
    assert dev.reading is not None and (dev.reading.value, dev.reading.unit, dev.reading.ts) == want, where
    if base:
        assert dev.reading in t.readings, where


def _check_object(t: P1Telegram, obj: dict[str, Any], where: str) -> None:
    where = f"{where} {obj['name']} {obj['address']}"
    if obj["type"] == "cosem":
        _check_cosem(t, obj, where)
    elif obj["type"] == "mbus":
        _check_mbus(t, obj, where)
    elif obj["type"] == "log":
        log = [(b["ts"]["ts"], int(b["value"])) for b in obj["buffer"] if b["ts"] and b["value"] is not None]
        assert [(p.end_ts, p.duration_s) for p in t.power_failures] == log, where
    elif obj["type"] == "peaks":
        peaks = [
            (p["month"]["ts"], p["at"]["ts"], float(Decimal(p["value"]["decimal"]) * 1000))
            for p in obj["peaks"]
            if p["month"] and p["at"]
        ]
        assert [(p.month_ts, p.at_ts, p.demand_w) for p in t.demand_peaks] == peaks, where
    else:
        pytest.fail(f"{where}: dsmr-parser gave a {obj['type']}")


def test_the_corpus_decodes_as_dsmr_parser_decodes_it() -> None:
    entries = [e for e in CORPUS if e["dsmr_parser_spec"]]
    texts = [(DATA / e["file"]).read_bytes() for e in entries]
    payload = [
        {"text": t.decode("latin-1"), "spec": e["dsmr_parser_spec"]} for e, t in zip(entries, texts, strict=True)
    ]
    theirs = _peer([], payload)
    checked = 0
    for entry, raw, peer in zip(entries, texts, theirs, strict=True):
        ours = decode_telegram(raw, received_ts=RECEIVED_TS)
        bad_crc = any(i.code == "bad_crc" for i in ours.issues)
        assert bad_crc == (peer["checksum"] == "bad_crc"), entry["file"]
        if bad_crc:
            continue
        assert peer["objects"], entry["file"]
        for obj in peer["objects"]:
            _check_object(ours, obj, entry["file"])
            checked += 1
    assert checked > 600  # every object of every telegram, not a sample


def _candidates(pattern: str) -> list[str]:
    """The OBIS codes a dsmr-parser reference pattern (``\\d-[1-9]:24.2.[13]``) stands for, as meters write them."""
    ab, cde = pattern.split(":")
    head, _, e = cde.rpartition(".")
    tails = list(e[1:-1]) if e.startswith("[") else [e]
    if "[1-9]" in ab:
        return [f"0-1:{head}.{t}" for t in tails]
    if ab[-1].isdigit():  # a fixed B (1-1:31.4.0, \d-0:96.1.1)
        return [f"{ab[0] if ab[0].isdigit() else a}-{ab[-1]}:{head}.{t}" for a in "01" for t in tails]
    return [f"{a}-{b}:{head}.{t}" for a, b in (("1", "0"), ("0", "0"), ("1", "3"), ("0", "1")) for t in tails]


def test_the_object_table_knows_every_code_dsmr_parser_knows() -> None:
    unknown = [p for p in _peer(["--codes"]) if all(classify(c)[0] is Kind.OTHER for c in _candidates(p))]
    assert unknown == []


_PEER = r"""
import json, sys
from dsmr_parser import telegram_specifications
from dsmr_parser.parsers import TelegramParser
parser = TelegramParser(telegram_specifications.V5)
out = []
for text in json.load(sys.stdin):
    t = parser.parse(text)
    out.append({
        "t1": float(t.ELECTRICITY_USED_TARIFF_1.value), "t2": float(t.ELECTRICITY_USED_TARIFF_2.value),
        "e1": float(t.ELECTRICITY_DELIVERED_TARIFF_1.value), "p": float(t.CURRENT_ELECTRICITY_USAGE.value),
        "v1": float(t.INSTANTANEOUS_VOLTAGE_L1.value), "ts": t.P1_MESSAGE_TIMESTAMP.value.timestamp(),
        "gas": float(t.get_mbus_device_by_channel(1).MBUS_METER_READING.value), "id": t.EQUIPMENT_IDENTIFIER.value,
    })
json.dump(out, sys.stdout)
"""


def test_dsmr_parser_agrees_with_our_telegrams() -> None:
    telegrams = [
        dsmr5_telegram(
            equipment_id=f"E{i:07d}",
            ts=1_700_000_000 + 86_400 * 40 * i,  # crosses summer and winter time
            import_wh=(1_234_567 + i * 1001, 765_432 + i),
            export_wh=(4321 * i, 0),
            power_w=(250 * i, 0),
            voltage_v=(229.5 + i / 10, 230.0, 231.0),
            current_a=(i, 2, 3),
            gas_m3=(1000.125 + i, 1_700_000_000 + 86_400 * 40 * i - 600),
        )
        for i in range(8)
    ]
    proc = subprocess.run(
        [sys.executable, "-c", _PEER],
        input=json.dumps([t.decode() for t in telegrams]),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    theirs = json.loads(proc.stdout)
    for raw, peer in zip(telegrams, theirs, strict=True):
        batch, issues = parse_telegram(raw)
        assert issues == []
        ours = {o: (v, t) for o, v, t in zip(batch.obis, batch.value, batch.ts, strict=True)}
        assert ours["1-0:1.8.1"][0] == round(peer["t1"] * 1000)
        assert ours["1-0:1.8.2"][0] == round(peer["t2"] * 1000)
        assert ours["1-0:2.8.1"][0] == round(peer["e1"] * 1000)
        assert ours["1-0:1.7.0"][0] == round(peer["p"] * 1000)
        assert abs(ours["1-0:32.7.0"][0] - peer["v1"]) < 1e-9
        assert ours["1-0:1.8.1"][1] == int(peer["ts"])
        assert abs(ours["0-1:24.2.1"][0] - peer["gas"]) < 1e-9
        assert set(batch.meter) == {bytes.fromhex(peer["id"]).decode()}


async def test_p1_stream_over_a_pty() -> None:
    master, slave = os.openpty()
    tty.setraw(master)
    try:
        uri = parse_meter_uri(f"p1://{os.ttyname(slave)}")
        sent = [dsmr5_telegram(equipment_id="P1PTY", ts=1_700_000_000 + s, import_wh=(s, 0)) for s in range(5)]
        stream = b"\x00tail of an earlier telegram!12\r\n" + b"".join(sent)
        splitter = P1Splitter()
        got: list[bytes] = []
        async with open_link(uri, timeout_s=2.0) as link:
            for i in range(0, len(stream), 97):  # the meter's UART writes in odd chunks
                os.write(master, stream[i : i + 97])
            while len(got) < len(sent):
                splitter.receive_data(await link.read())
                while (t := splitter.next_event()) is not NEED_DATA:
                    got.append(t)
        assert got == sent
        assert [parse_telegram(t)[0].ts[0] for t in got] == [1_700_000_000 + s for s in range(5)]
    finally:
        await asyncio.sleep(0)
        os.close(master)
        os.close(slave)
