"""``amiflow usage export`` and ``insights`` on a real database: a Green Button feed valid against ESPI's schemas whose
sums equal the store's (summed here in SQL, independently of the export's query), the CSV, the insights and the
best-tariff advice, and one-line errors for bad input.

Meter M1 (America/Los_Angeles, on res-tou-tiers, with PV export) has October and November 2026 and November 2025;
November 2026 starts on the day DST ends (100 quarter hours). One missing interval was estimated by VEE
(interpolated), one reading was replaced by a like-day estimate, every 97th November interval is suspect.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import psycopg
import pytest

from amiflow.db.writer import BatchWriter
from amiflow.types import QualityFlag, ReadingBatch
from amiflow_app.cli import main
from billing_bridge.customer import export_usage, usage_insights, write_greenbutton_files
from billing_bridge.customer.greenbutton import ATOM_NS, ESPI_NS
from billing_bridge.customer.usage import UsageNotFound
from rating.tariff_files import load_tariff
from rating.tariff_store import store_tariff

ROOT = Path(__file__).resolve().parents[2]
ESPI_XSD = ROOT.parent / "shared" / "data" / "espi" / "usage.xsd"
TZ = "America/Los_Angeles"
NS = {"a": ATOM_NS, "e": ESPI_NS}


def _midnight(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=ZoneInfo(TZ)).timestamp())


def _ends(start: date, end: date) -> np.ndarray:
    return np.arange(_midnight(start) + 900, _midnight(end) + 1, 900, dtype=np.int64)


def _profile(ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    hour = ((ts - 900 - 8 * 3600) % 86400) // 3600  # close enough to local hours for a load shape
    imp = 60.0 + 250.0 * ((hour >= 17) & (hour < 21)) + 0.5 * (np.arange(len(ts)) % 7)
    exp = np.where((hour >= 10) & (hour < 15), 120.0, 0.0)
    return imp, exp


MISSING_TS = _midnight(date(2026, 11, 10)) + 900 * 40  # dropped from readings, estimated by VEE
EDITED_TS = _midnight(date(2026, 11, 11)) + 900 * 41  # stored, then replaced by a like-day estimate


@pytest.fixture
def store(db_conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    return fill_store(db_conn)


def fill_store(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """The example tariffs, meters M1 (with data) and M2 (without), and the VEE estimates described above."""
    for path in sorted((ROOT / "rating" / "tariffs").iterdir()):
        for spec in load_tariff(path):
            store_tariff(conn, spec)
    conn.execute(
        "INSERT INTO amiflow.meters (name, protocol, timezone, tariff, account) VALUES"
        " ('M1', 'mqtt', %s, 'res-tou-tiers', 'ACC-1'), ('M2', 'mqtt', %s, 'res-tou-tiers', 'ACC-2')",
        (TZ, TZ),
    )
    writer = BatchWriter(conn)
    for start, end in ((date(2025, 11, 1), date(2025, 12, 1)), (date(2026, 10, 1), date(2026, 12, 1))):
        ts = _ends(start, end)
        ts = ts[ts != MISSING_TS]
        imp, exp = _profile(ts)
        quality = np.where((np.arange(len(ts)) % 97 == 0) & (ts > _midnight(date(2026, 11, 1))), 4, 0)
        writer.write(ReadingBatch.from_columns("M1", "1-0:1.29.0", ts, imp, unit="Wh", quality=quality))
        writer.write(ReadingBatch.from_columns("M1", "1-0:2.29.0", ts, exp, unit="Wh"))
    est = int(QualityFlag.ESTIMATED)
    for at, pre, post, bits, method in (
        (MISSING_TS, None, 65.5, est, 1),
        (EDITED_TS, 60.0, 333.0, est | int(QualityFlag.EDITED), 2),
    ):
        conn.execute(
            "INSERT INTO amiflow.vee_intervals (meter_id, channel_id, ts, period_start, pre_value, post_value,"
            " quality, rules, method) SELECT id, 1, to_timestamp(%s), '2026-11-01', %s, %s, %s, 1, %s"
            " FROM amiflow.meters WHERE name = 'M1'",
            (at, pre, post, bits, method),
        )
    return conn


def _store_sums(conn: psycopg.Connection[Any], start: date, end: date) -> dict[str, float]:
    rows = conn.execute(
        "SELECT c.obis, sum(coalesce(v.post_value, r.value)), count(*)"
        " FROM amiflow.readings r FULL JOIN amiflow.vee_intervals v USING (meter_id, channel_id, ts)"
        " JOIN amiflow.channels c ON c.id = channel_id JOIN amiflow.meters m ON m.id = meter_id"
        " WHERE m.name = 'M1' AND ts > to_timestamp(%s) AND ts <= to_timestamp(%s) GROUP BY c.obis",
        (_midnight(start), _midnight(end)),
    ).fetchall()
    return {obis: float(total) for obis, total, _ in rows}


def _validate(data: bytes) -> None:
    xmlschema = pytest.importorskip("xmlschema", reason="xmlschema is in the test extra (pip install -e '.[test]')")
    if not ESPI_XSD.exists():
        pytest.skip(f"the ESPI schemas are not at {ESPI_XSD}")
    schema = xmlschema.XMLSchema(str(ESPI_XSD))
    errors = list(schema.iter_errors(data.decode()))
    assert not errors, str(errors[0])[:2000]


def _channels(data: bytes) -> dict[int, dict[str, Any]]:
    """flowDirection -> ReadingType fields, the readings (start, value, qualities) and the block starts."""
    root = ET.fromstring(data)
    types = {}
    for rt in root.iterfind("a:entry/a:content/e:ReadingType", NS):
        fields = {child.tag.split("}")[1]: int(child.text or 0) for child in rt}
        types[fields["flowDirection"]] = fields
    out: dict[int, dict[str, Any]] = {}
    for entry in root.iterfind("a:entry", NS):
        block = entry.find("a:content/e:IntervalBlock", NS)
        if block is None:
            continue
        link = entry.find("a:link[@rel='self']", NS)
        flow = 1 if link is not None and "/MeterReading/import/" in link.get("href", "") else 19
        ch = out.setdefault(flow, {"type": types[flow], "readings": [], "blocks": []})
        ch["blocks"].append(len(block.findall("e:IntervalReading", NS)))
        for r in block.iterfind("e:IntervalReading", NS):
            codes = tuple(int(q.text or 0) for q in r.iterfind("e:ReadingQuality/e:quality", NS))
            ch["readings"].append(
                (int(r.findtext("e:timePeriod/e:start", "0", NS)), int(r.findtext("e:value", "0", NS)), codes)
            )
    return out


def test_feed_is_valid_espi_and_sums_to_the_store(store: psycopg.Connection[Any]) -> None:
    start, end = date(2026, 11, 1), date(2026, 12, 1)
    data = export_usage(store, "M1", start, end, "espi")
    _validate(data)
    sums = _store_sums(store, start, end)
    channels = _channels(data)
    assert set(channels) == {1, 19}  # import forward, export reverse
    for flow, obis in ((1, "1-0:1.29.0"), (19, "1-0:2.29.0")):
        ch = channels[flow]
        m = ch["type"]["powerOfTenMultiplier"]
        assert ch["type"]["uom"] == 72 and ch["type"]["intervalLength"] == 900 and ch["type"]["currency"] == 840
        assert sum(v for _, v, _ in ch["readings"]) * 10.0**m == pytest.approx(sums[obis], abs=1e-6)
        assert len(ch["blocks"]) == 30 and ch["blocks"][0] == 100  # one block per local day; DST ends Nov 1
    imp = {t: codes for t, _, codes in channels[1]["readings"]}
    assert imp[MISSING_TS - 900] == (9,)  # estimated by interpolation
    assert imp[EDITED_TS - 900] == (8,)  # estimated from history (replacing a stored reading)
    suspect = store.execute(
        "SELECT count(*) FROM amiflow.v_readings WHERE meter = 'M1' AND obis = '1-0:1.29.0'"
        " AND 'suspect' = ANY(quality) AND ts > to_timestamp(%s) AND ts <= to_timestamp(%s) AND ts <> to_timestamp(%s)",
        (_midnight(start), _midnight(end), EDITED_TS),
    ).fetchone()
    assert suspect is not None and suspect[0] > 20
    assert sum(1 for codes in imp.values() if codes == (10,)) == suspect[0]  # questionable: failed a check
    assert channels[1]["type"]["defaultQuality"] == 14  # no VEE results for the month: raw
    root = ET.fromstring(data)
    ltp = root.find("a:entry/a:content/e:LocalTimeParameters", NS)
    assert ltp is not None and ltp.findtext("e:tzOffset", None, NS) == "-28800"
    rules = (ltp.findtext("e:dstStartRule", None, NS), ltp.findtext("e:dstEndRule", None, NS))
    assert rules == ("360E2000", "B40E2000")  # second Sunday of March, first Sunday of November, 02:00
    point = root.find("a:entry/a:content/e:UsagePoint/e:ServiceCategory/e:kind", NS)
    assert point is not None and point.text == "0"
    for entry in root.iterfind("a:entry", NS):
        rels = [link.get("rel") for link in entry.iterfind("a:link", NS)]
        assert rels[:2] == ["self", "up"]


def test_csv_export_through_the_cli(
    store: psycopg.Connection[Any], db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMIFLOW_DATABASE_URL", db_url)
    out = tmp_path / "m1.csv"
    args = ["usage", "export", "--meter", "M1", "--from", "2026-11-01", "--to", "2026-12-01", "--format", "csv"]
    assert main([*args, "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "start_utc,end_utc,local_start,kwh_import,kwh_export,quality"
    rows = [line.split(",") for line in lines[1:]]
    assert len(rows) == 30 * 96 + 4  # every interval of November, the DST day has 100
    sums = _store_sums(store, date(2026, 11, 1), date(2026, 12, 1))
    assert sum(Decimal(r[3]) for r in rows) * 1000 == pytest.approx(Decimal(repr(sums["1-0:1.29.0"])))
    assert rows[0][:3] == ["2026-11-01T07:00:00Z", "2026-11-01T07:15:00Z", "2026-11-01T00:00:00-07:00"]
    assert any(r[5] == "estimated" for r in rows) and any(r[5] == "estimated;edited" for r in rows)


def test_espi_export_through_the_cli_to_stdout(
    store: psycopg.Connection[Any],
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    monkeypatch.setenv("AMIFLOW_DATABASE_URL", db_url)
    assert main(["usage", "export", "--meter", "M1", "--from", "2026-10-01", "--to", "2026-10-03"]) == 0
    data = capsysbinary.readouterr().out
    _validate(data)
    assert sum(len(c["blocks"]) for c in _channels(data).values()) == 4


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--meter", "NOPE", "--from", "2026-11-01", "--to", "2026-12-01"], ["unknown meter 'NOPE'"]),
        (["--meter", "M1", "--from", "2026-12-01", "--to", "2026-11-01"], ["--from 2026-12-01 is not before"]),
        (["--meter", "M1", "--from", "2026-11-01", "--to", "2026-11-01"], ["the period is empty"]),
        (["--meter", "M2", "--from", "2026-11-01", "--to", "2026-12-01"], ["meter 'M2' has no interval readings"]),
        (["--meter", "M1", "--from", "2024-01-01", "--to", "2024-02-01"], ["no intervals in 2024-01-01..2024-02-01"]),
        (["--meter", "M1", "--from", "2026-11-31", "--to", "2026-12-01"], ["--from '2026-11-31' is not a date"]),
    ],
)
def test_bad_input_is_one_line_and_no_feed(
    store: psycopg.Connection[Any],
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    words: list[str],
) -> None:
    monkeypatch.setenv("AMIFLOW_DATABASE_URL", db_url)
    assert main(["usage", "export", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # never an empty feed
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("amiflow usage export: "), captured.err
    for word in words:
        assert word in lines[0]


def test_insights_and_best_tariff(store: psycopg.Connection[Any]) -> None:
    found = usage_insights(store, "M1", date(2026, 11, 1))
    assert found.intervals == 30 * 96 + 4 and found.expected_intervals == 30 * 96 + 4
    kwh = _store_sums(store, date(2026, 11, 1), date(2026, 12, 1))["1-0:1.29.0"] / 1000
    assert found.kwh_import == pytest.approx(kwh)
    assert found.baseload_w is not None and 240 <= found.baseload_w <= 260  # 60-63 Wh per quarter hour at night
    assert {h for h, _ in found.peak_hours} <= set(range(16, 22))
    prev, last_year = found.comparisons
    assert prev.period == "2026-10" and prev.kwh is not None and prev.delta_pct is not None
    assert last_year.period == "2025-11" and last_year.kwh is not None
    assert abs(last_year.delta_kwh or 0) < 1.0  # the same shape a year earlier (only the VEE edits differ)
    options = {o.tariff: o for o in found.advice.options}
    assert set(options) == {"res-tou-tiers", "res-nem-tou"}  # same class and currency; com-tou-demand is not
    assert options["res-tou-tiers"].current and not options["res-tou-tiers"].hypothetical
    assert options["res-nem-tou"].hypothetical and options["res-nem-tou"].total > 0
    assert all(t.saving > 0 and t.currency == "USD" for t in found.advice.tips)
    cheapest = found.advice.options[0]
    if not cheapest.current:
        switch = found.advice.tips[0]
        assert switch.saving == options["res-tou-tiers"].total - cheapest.total and cheapest.tariff in switch.text
    text = "\n".join(found.sentences())
    assert "2026-10" in text and "2025-11" in text and "baseload" in text
    data = found.to_json()
    assert data["tariffs"][0]["total"] == str(cheapest.total) and isinstance(data["tips"][0]["saving"], str)


def test_insights_cli_json_and_errors(
    store: psycopg.Connection[Any], db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    monkeypatch.setenv("AMIFLOW_DATABASE_URL", db_url)
    assert main(["usage", "insights", "--meter", "M1", "--period", "2026-11", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["period"] == "2026-11" and any(t["hypothetical"] for t in data["tariffs"])
    assert main(["usage", "insights", "--meter", "M1", "--period", "2026-13"]) == 2
    assert "--period '2026-13' is not a month" in capsys.readouterr().err
    assert main(["usage", "insights", "--meter", "M2", "--period", "2026-11"]) == 2
    assert "no interval readings" in capsys.readouterr().err


def test_demo_files_for_billed_meters(store: psycopg.Connection[Any], tmp_path: Path) -> None:
    store.execute(
        "INSERT INTO amiflow.bills (bill_id, version, account, meter, period_start, period_end, tariff_id,"
        " tariff_version, total, currency, content_hash, body) VALUES ('B1', 1, 'ACC-1', 'M1', '2026-11-01',"
        " '2026-11-30', 'res-tou-tiers', 1, 10, 'USD', 'h', '{}')"
    )
    assert write_greenbutton_files(store, tmp_path, date(2026, 11, 1), date(2026, 12, 1)) == 1
    data = (tmp_path / "greenbutton" / "M1.xml").read_bytes()
    _validate(data)
    with pytest.raises(UsageNotFound):
        export_usage(store, "M1", date(2026, 11, 1), date(2026, 12, 1), account="ACC-2")


def test_heat_and_water_meters_export_their_own_service_and_unit(db_conn: psycopg.Connection[Any]) -> None:
    """A heat meter's feed is ServiceCategory 4 in Wh of heating fluid, a water meter's 2 in m3 of drinking water
    (ESPI ServiceKind, CommodityKind, MeasurementKind, UnitSymbolKind); both schema-valid, summing to the store,
    and their CSV in kWh and m3."""
    db_conn.execute(
        "INSERT INTO amiflow.meters (name, protocol, timezone) VALUES ('HM1', 'mbus', %s), ('WM1', 'mbus', %s)",
        (TZ, TZ),
    )
    start, end = date(2026, 11, 2), date(2026, 11, 4)
    ts = _ends(start, end)
    heat = 250.0 + 10.0 * (np.arange(len(ts)) % 4)  # Wh per quarter hour
    water = np.round(0.001 * (np.arange(len(ts)) % 9) + 0.0004 * (np.arange(len(ts)) % 3 == 0), 4)  # m3: 0.1 L steps
    writer = BatchWriter(db_conn)
    writer.write(ReadingBatch.from_columns("HM1", "6-0:1.29.0", ts, heat, unit="Wh"))
    writer.write(ReadingBatch.from_columns("WM1", "8-0:1.29.0", ts, water, unit="m3"))
    for meter, service, commodity, kind, uom, total in (
        ("HM1", 4, 12, 12, 72, heat.sum()),
        ("WM1", 2, 9, 58, 42, water.sum()),
    ):
        data = export_usage(db_conn, meter, start, end, "espi")
        _validate(data)
        root = ET.fromstring(data)
        assert root.findtext("a:entry/a:content/e:UsagePoint/e:ServiceCategory/e:kind", None, NS) == str(service)
        ch = _channels(data)
        assert list(ch) == [1]  # one forward channel
        rt = ch[1]["type"]
        assert (rt["commodity"], rt["kind"], rt["uom"]) == (commodity, kind, uom), rt
        scale = 10.0 ** rt["powerOfTenMultiplier"]
        assert sum(v for _s, v, _q in ch[1]["readings"]) * scale == pytest.approx(total, abs=1e-9)
        assert len(ch[1]["readings"]) == len(ts) and ch[1]["blocks"] == [96, 96]
    assert _channels(export_usage(db_conn, "WM1", start, end, "espi"))[1]["type"]["powerOfTenMultiplier"] == -6
    heat_csv = export_usage(db_conn, "HM1", start, end, "csv").decode().splitlines()
    water_csv = export_usage(db_conn, "WM1", start, end, "csv").decode().splitlines()
    assert heat_csv[0] == "start_utc,end_utc,local_start,kwh_import,kwh_export,quality"
    assert water_csv[0] == "start_utc,end_utc,local_start,m3_import,m3_export,quality"
    assert sum(float(line.split(",")[3]) for line in heat_csv[1:]) == pytest.approx(heat.sum() / 1000)
    assert sum(float(line.split(",")[3]) for line in water_csv[1:]) == pytest.approx(water.sum())
