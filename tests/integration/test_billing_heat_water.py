"""The billing run from the database bills a heat meter per MWh and a water meter per m3 on their own channels
(6-0:1.29.0 in Wh, 8-0:1.29.0 in m3: the intervals the poller derives from M-Bus registers), VEE'd on those
channels, to the cent of the bills worked out by hand from the tariff documents (tests/unit/rating/
test_heat_water_tariffs.py shows the arithmetic); an electricity meter in the same run keeps its kWh bill."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from amiflow.db.registry import MeterRecord, add_meter
from amiflow.db.writer import BatchWriter
from amiflow.types import ReadingBatch, Source
from billing_bridge.customer.documents import index_entry, render_month
from rating.billing_run import RunOptions, run_billing
from rating.tariff_files import load_tariff
from rating.tariff_store import store_tariff

TARIFFS = Path(__file__).resolve().parents[2] / "rating" / "tariffs"
T0 = int(datetime(2026, 10, 4, tzinfo=UTC).timestamp())  # four weeks of history before November
P0, P1 = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp()), int(datetime(2026, 12, 1, tzinfo=UTC).timestamp())


def _spread(total: int, n: int) -> np.ndarray:
    weights = 1.0 + 0.5 * np.sin(np.arange(n) / 37.0)
    whole = np.floor(weights / weights.sum() * total).astype(np.int64)
    whole[-1] += total - whole.sum()
    return whole.astype(np.float64)


def _meter(conn: psycopg.Connection[Any], name: str, tariff: str, channel: str, unit: str, month: np.ndarray) -> None:
    """A meter with its intervals (history + November) and its register at the period's ends."""
    add_meter(conn, MeterRecord(name=name, protocol="mbus", uri="mbus+tcp://127.0.0.1:1?address=1", tariff=tariff,
                                account=f"A-{name}"))  # fmt: skip
    ts = np.arange(T0 + 900, P1 + 1, 900, dtype=np.int64)
    values = np.concatenate([np.full(len(ts) - len(month), float(month.mean())), month])
    writer = BatchWriter(conn)
    writer.write(ReadingBatch.from_columns(name, channel, ts, values, unit=unit, source=Source.MBUS))
    register = channel.replace(".29.", ".8.")
    start = 1_000.0
    writer.write(ReadingBatch.from_columns(name, register, [P0, P1], [start, start + float(month.sum())], unit=unit,
                                           source=Source.MBUS))  # fmt: skip


def test_heat_and_water_bills(db_url: str, db_conn: psycopg.Connection[Any], tmp_path: Path) -> None:
    for name in ("heat_per_mwh.toml", "water_per_m3.toml", "residential_tou_tiers.toml"):
        for spec in load_tariff(TARIFFS / name):
            store_tariff(db_conn, spec)
    _meter(db_conn, "HEAT1", "heat-mwh", "6-0:1.29.0", "Wh", _spread(12_345_678, 2880))  # 12.345678 MWh
    _meter(db_conn, "WATER1", "water-m3", "8-0:1.29.0", "m3", _spread(14_237, 2880) / 1000)  # 14.237 m3
    run_billing(db_url, RunOptions(period=date(2026, 11, 1), progress=False, workers=0))
    bills = dict(db_conn.execute("SELECT meter, total::text FROM amiflow.v_bills").fetchall())
    assert bills == {"HEAT1": "1310.43", "WATER1": "52.62"}
    lines = db_conn.execute(
        "SELECT b.meter, l.code, l.quantity::text, l.unit FROM amiflow.bill_lines l"
        " JOIN amiflow.bills b ON b.id = l.bill WHERE l.code LIKE 'energy%%' ORDER BY 1, 2"
    ).fetchall()
    assert [(m, c, float(q), u) for m, c, q, u in lines] == [
        ("HEAT1", "energy.all", 12.346, "MWh"), ("WATER1", "energy.all.t1", 10.0, "m3"),
        ("WATER1", "energy.all.t2", 4.237, "m3"),
    ]  # fmt: skip
    vee = db_conn.execute(
        "SELECT m.name, c.obis FROM amiflow.vee_results v JOIN amiflow.meters m ON m.id = v.meter_id"
        " JOIN amiflow.channels c ON c.id = v.channel_id ORDER BY 1"
    ).fetchall()
    assert vee == [("HEAT1", "6-0:1.29.0"), ("WATER1", "8-0:1.29.0")]
    # the customer's documents say what was used in the tariff's unit; index.json's kwh_import stays kWh
    written = render_month(db_conn, date(2026, 11, 1), tmp_path, formats=("html",))
    index = {e["meter"]: e for e in (index_entry(w) for w in written)}
    assert (index["HEAT1"]["kwh_import"], index["HEAT1"]["usage"], index["HEAT1"]["usage_unit"]) == (
        "12346.000", "12.346", "MWh")  # fmt: skip
    assert (index["WATER1"]["kwh_import"], index["WATER1"]["usage"], index["WATER1"]["usage_unit"]) == (
        "0.000", "14.237", "m3")  # fmt: skip
    pages = {w.document.meter: w.html.read_text() for w in written if w.html is not None}
    assert "Water used" in pages["WATER1"] and "14.237 m3" in pages["WATER1"] and "kWh" not in pages["WATER1"]
    assert "12.346 MWh" in pages["HEAT1"]
