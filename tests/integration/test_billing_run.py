"""Billing run on a real PostgreSQL: bills, lines, determinants, outbox rows, skips with reasons, idempotency,
re-rate -> new version, crash and resume (injected failure, and kill -9 of the CLI), local processes and a Dask
cluster, ratchets from earlier bills, and the VEE-only run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import psycopg
import pytest

from amiflow.db.registry import MeterRecord, add_meter
from amiflow.db.writer import BatchWriter
from amiflow.types import ReadingBatch, Source
from rating.billing_run import RunOptions, run_billing
from rating.tariff_files import load_tariff
from rating.tariff_store import store_tariff

TZ = "America/Los_Angeles"
PERIOD = date(2024, 3, 1)  # has the spring DST change (92 quarter hours on 2024-03-10)
TARIFF = Path(__file__).parents[2] / "rating" / "tariffs" / "residential_tou_tiers.toml"


def _axis(first: date, end: date) -> np.ndarray:
    zone = ZoneInfo(TZ)
    lo = int(datetime(first.year, first.month, first.day, tzinfo=zone).timestamp())
    hi = int(datetime(end.year, end.month, end.day, tzinfo=zone).timestamp())
    return np.arange(lo + 900, hi + 1, 900, dtype=np.int64)


def _profile(ts: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hour = ((ts - 900) // 3600 - 8) % 24
    base = 60.0 + 90.0 * ((hour >= 17) & (hour < 22)) + 40.0 * ((hour >= 7) & (hour < 9))
    return np.round(base * rng.uniform(0.8, 1.2, len(ts)), 3)


def seed_meter(
    conn: psycopg.Connection[Any],
    name: str,
    *,
    tariff: str | None = "res-tou-tiers",
    status: str = "active",
    drop: slice | None = None,
    register_factor: float | None = 1.0,
    seed: int = 1,
    data: bool = True,
) -> np.ndarray:
    """Register a meter and write Feb + Mar 2024 of 15-min import energy (Wh) and the register at Mar 1 / Apr 1."""
    add_meter(conn, MeterRecord(name=name, protocol="mqtt", timezone=TZ, tariff=tariff, account=f"A-{name}",
                                status=status))  # fmt: skip
    ts = _axis(date(2024, 2, 1), date(2024, 4, 1))
    wh = _profile(ts, seed)
    if not data:
        return wh
    keep = np.ones(len(ts), dtype=bool)
    if drop is not None:
        keep[drop] = False
    writer = BatchWriter(conn)
    writer.write(ReadingBatch.from_columns(name, "1-0:1.29.0", ts[keep], wh[keep], unit="Wh", source=Source.MQTT))
    if register_factor is not None:
        start, end = _axis(PERIOD, date(2024, 4, 1))[[0, -1]] - np.array([900, 0])
        in_period = (ts > start) & (ts <= end)
        reg0 = 5_000_000.0
        reg1 = reg0 + float(wh[in_period].sum()) * register_factor
        writer.write(ReadingBatch.from_columns(name, "1-0:1.8.0", [start, end], [reg0, reg1], unit="Wh"))
    return wh


def _tariff(conn: psycopg.Connection[Any]) -> None:
    for spec in load_tariff(TARIFF):
        store_tariff(conn, spec)


def _opts(**over: Any) -> RunOptions:
    base: dict[str, Any] = {"period": PERIOD, "block_meters": 2, "progress": False, "workers": 0}
    return RunOptions(**{**base, **over})


def _fleet(conn: psycopg.Connection[Any]) -> None:
    _tariff(conn)
    for k in range(4):
        seed_meter(conn, f"M{k}", seed=k)
    seed_meter(conn, "GAP", drop=slice(96 * 29 + 40, 96 * 29 + 43), seed=7)  # 3 missing in March: interpolated
    seed_meter(conn, "OFF", status="inactive")
    seed_meter(conn, "NOTARIFF", tariff=None)
    seed_meter(conn, "WRONGTARIFF", tariff="no-such-tariff")
    seed_meter(conn, "EMPTY", data=False)
    seed_meter(conn, "SPARSE", drop=slice(96 * 29 + 96 * 5, None), seed=8)  # the last 26 days missing
    seed_meter(conn, "KWH", register_factor=0.001, seed=9)  # register in kWh units: intervals 1000x the delta


def _bills(conn: psycopg.Connection[Any]) -> dict[str, tuple[int, str, str]]:
    rows = conn.execute("SELECT meter, version, total::text, status FROM amiflow.v_bills ORDER BY meter, version")
    return {r[0]: (r[1], r[2], r[3]) for r in rows.fetchall() if r[3] == "issued"}


def test_billing_run_bills_skips_outbox(db_url: str, db_conn: psycopg.Connection[Any]) -> None:
    _fleet(db_conn)
    result = run_billing(db_url, _opts())
    s = result.summary
    assert s["meters_billed"] == 5
    assert s["skipped"] == {
        "inactive": 1,
        "no_tariff": 1,
        "unknown_tariff": 1,
        "no_data": 1,
        "too_much_estimated": 1,
        "vee_hold:unit": 1,
    }
    assert s["bills"] == {"new": 5, "revised": 0, "unchanged": 0}
    bills = _bills(db_conn)
    assert sorted(bills) == ["GAP", "M0", "M1", "M2", "M3"]
    assert all(v[0] == 1 for v in bills.values())
    assert Decimal(s["totals"]["USD"]) == sum(Decimal(v[1]) for v in bills.values())
    skips = dict(db_conn.execute("SELECT meter, reason FROM amiflow.bill_run_skips").fetchall())
    assert skips["KWH"] == "vee_hold:unit" and skips["SPARSE"] == "too_much_estimated"
    # the outbox holds each bill once, under bill:<bill_id>:v1, with the stored body
    out = db_conn.execute(
        "SELECT o.idempotency_key, o.account, o.payload = b.body FROM amiflow.outbox o"
        " JOIN amiflow.bills b ON o.idempotency_key = 'bill:' || b.bill_id || ':v' || b.version ORDER BY 1"
    ).fetchall()
    assert len(out) == 5 and all(r[2] for r in out)
    assert out[0][0] == "bill:GAP:2024-03-01:2024-03-31:v1" and out[0][1] == "A-GAP"
    # the GAP bill: 3 interpolated intervals, its share stated, lines and determinants stored row for row
    body = db_conn.execute("SELECT body FROM amiflow.bills WHERE meter = 'GAP'").fetchone()[0]  # type: ignore[index]
    assert body["vee"]["estimated"] == 3 and body["vee"]["methods"] == {"interpolated": 3}
    assert body["estimated_share"] == pytest.approx(3 / (31 * 96 - 4), abs=1e-6)
    assert body["determinants"]["missing_intervals"] == 0
    assert sum(Decimal(line["amount"]) for line in body["lines"]) == Decimal(body["total"])
    n_lines, n_det = db_conn.execute(
        "SELECT (SELECT count(*) FROM amiflow.bill_lines l JOIN amiflow.bills b ON b.id = l.bill"
        " WHERE b.meter = 'GAP'), (SELECT count(*) FROM amiflow.bill_determinants d"
        " JOIN amiflow.bills b ON b.id = d.bill WHERE b.meter = 'GAP')"
    ).fetchone()  # type: ignore[misc]
    assert n_lines == len(body["lines"]) and n_det >= 5
    # pre/post versions of the estimated intervals are kept
    pre_post = db_conn.execute(
        "SELECT pre_value, post_value, 'estimated' = ANY(quality), method FROM amiflow.v_vee_intervals"
        " WHERE meter = 'GAP' AND 'missing' = ANY(rules)"
    ).fetchall()
    assert len(pre_post) == 3 and all(r[0] is None and r[1] > 0 and r[2] and r[3] == "interpolated" for r in pre_post)
    run = db_conn.execute("SELECT status, summary->>'meters_billed' FROM amiflow.bill_runs").fetchone()
    assert run == ("done", "5")


def test_rerun_is_idempotent_and_rerate_makes_a_new_version(db_url: str, db_conn: psycopg.Connection[Any]) -> None:
    _fleet(db_conn)
    run_billing(db_url, _opts())
    first = _bills(db_conn)
    again = run_billing(db_url, _opts())
    assert not again.resumed
    assert again.summary["bills"] == {"new": 0, "revised": 0, "unchanged": 5}
    assert _bills(db_conn) == first
    assert db_conn.execute("SELECT count(*) FROM amiflow.outbox").fetchone() == (5,)
    # corrected data for M1: March 14 was read 50 % low; the day and the closing register are corrected
    added = db_conn.execute(
        "WITH m AS (SELECT id FROM amiflow.meters WHERE name = 'M1'), u AS (UPDATE amiflow.readings r"
        " SET value = value * 1.5, source = %s FROM m WHERE r.meter_id = m.id AND channel_id = 1"
        " AND ts > '2024-03-14T07:00:00Z' AND ts <= '2024-03-15T07:00:00Z' RETURNING r.value / 3 AS added)"
        " SELECT sum(added) FROM u",
        (int(Source.MANUAL),),
    ).fetchone()[0]  # type: ignore[index]
    db_conn.execute(
        "UPDATE amiflow.readings SET value = value + %s WHERE channel_id = 5 AND ts = '2024-04-01T07:00:00Z'"
        " AND meter_id = (SELECT id FROM amiflow.meters WHERE name = 'M1')",
        (added,),
    )
    rerate = run_billing(db_url, _opts())
    assert rerate.summary["bills"] == {"new": 0, "revised": 1, "unchanged": 4}
    now = _bills(db_conn)
    assert now["M1"][0] == 2 and Decimal(now["M1"][1]) > Decimal(first["M1"][1])
    assert {k: v for k, v in now.items() if k != "M1"} == {k: v for k, v in first.items() if k != "M1"}
    keys = [r[0] for r in db_conn.execute("SELECT idempotency_key FROM amiflow.outbox WHERE idempotency_key LIKE"
                                          " 'bill:M1:%' ORDER BY id").fetchall()]  # fmt: skip
    assert keys == ["bill:M1:2024-03-01:2024-03-31:v1", "bill:M1:2024-03-01:2024-03-31:v2"]
    statuses = db_conn.execute("SELECT version, status FROM amiflow.bills WHERE meter = 'M1' ORDER BY version")
    assert statuses.fetchall() == [(1, "superseded"), (2, "issued")]


class _Crash(Exception):
    pass


def test_crash_after_a_block_then_resume(db_url: str, db_conn: psycopg.Connection[Any]) -> None:
    _fleet(db_conn)
    seen: list[int] = []

    def crash_after_four(summary: dict[str, Any]) -> None:
        seen.append(summary["block"])
        if len(seen) == 4:
            raise _Crash("injected failure after the 4th block")

    with pytest.raises(_Crash):
        run_billing(db_url, _opts(), after_block=crash_after_four)
    run_id, status = db_conn.execute("SELECT id, status FROM amiflow.bill_runs").fetchone()  # type: ignore[misc]
    assert status == "failed"
    done = db_conn.execute(
        "SELECT block_no, committed_at FROM amiflow.bill_run_blocks WHERE state = 'done' ORDER BY 1"
    ).fetchall()
    assert [r[0] for r in done] == seen
    billed_before = db_conn.execute("SELECT count(*) FROM amiflow.bills").fetchone()[0]  # type: ignore[index]
    assert 0 < billed_before < 5
    resumed = run_billing(db_url, _opts(), after_block=lambda s: seen.append(s["block"]))
    assert resumed.resumed and resumed.run_id == run_id
    assert len(seen) == len(set(seen))  # no block ran twice
    again = db_conn.execute(
        "SELECT block_no, committed_at FROM amiflow.bill_run_blocks WHERE block_no = ANY(%s) ORDER BY 1",
        ([r[0] for r in done],),
    ).fetchall()
    assert again == done  # the committed blocks were skipped, not redone
    assert resumed.summary["meters_billed"] == 5 and resumed.summary["bills"]["new"] == 5
    assert db_conn.execute("SELECT count(*), count(DISTINCT bill_id), max(version) FROM amiflow.bills").fetchone() == (
        5,
        5,
        1,
    )
    assert db_conn.execute("SELECT count(*) FROM amiflow.outbox").fetchone() == (5,)
    assert db_conn.execute("SELECT status FROM amiflow.bill_runs WHERE id = %s", (run_id,)).fetchone() == ("done",)


def test_local_processes_and_dask_give_the_same_bills(db_url: str, db_conn: psycopg.Connection[Any]) -> None:
    _tariff(db_conn)
    for k in range(4):
        seed_meter(db_conn, f"P{k}", seed=10 + k)
    run_billing(db_url, _opts(workers=2))
    serial_bills = _bills(db_conn)
    assert len(serial_bills) == 4
    db_conn.execute("DELETE FROM amiflow.outbox")
    db_conn.execute("DELETE FROM amiflow.bills")
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, processes=False, dashboard_address=None) as cluster:
        result = run_billing(db_url, _opts(dask=cluster.scheduler_address))
    assert result.summary["bills"]["new"] == 4
    assert _bills(db_conn) == serial_bills


def test_vee_run_stores_pre_post_and_summary(db_url: str, db_conn: psycopg.Connection[Any]) -> None:
    seed_meter(db_conn, "V1", tariff=None, drop=slice(96 * 29 + 96 * 3, 96 * 29 + 96 * 4), seed=3)  # March 3 lost
    db_conn.execute("UPDATE amiflow.readings SET value = -50 WHERE channel_id = 1 AND ts = '2024-03-20T12:00:00Z'")
    result = run_billing(db_url, _opts(kind="vee"))
    assert result.summary["meters_validated"] == 1
    row = db_conn.execute("SELECT estimated, hold, summary FROM amiflow.vee_results").fetchone()
    assert row is not None
    estimated, hold, summary = row
    assert estimated == 97 and hold is None  # a day of 96 + the negative interval
    assert summary["rules"] == {"missing": 96, "negative": 1} and summary["methods"]["like_day"] == 96
    neg = db_conn.execute(
        "SELECT pre_value, post_value, quality FROM amiflow.v_vee_intervals WHERE 'negative' = ANY(rules)"
    ).fetchone()
    assert neg is not None and neg[0] == -50 and neg[1] >= 0 and {"estimated", "edited", "negative"} <= set(neg[2])
    # the register delta is met: like-day estimates were scaled to it
    total = db_conn.execute(
        "SELECT sum(coalesce(v.post_value, r.value)) FROM amiflow.readings r FULL JOIN amiflow.vee_intervals v"
        " USING (meter_id, channel_id, ts) WHERE coalesce(r.channel_id, v.channel_id) = 1"
        " AND coalesce(r.ts, v.ts) > '2024-03-01T08:00:00Z' AND coalesce(r.ts, v.ts) <= '2024-04-01T07:00:00Z'"
    ).fetchone()[0]  # type: ignore[index]
    reg = db_conn.execute("SELECT max(value) - min(value) FROM amiflow.readings WHERE channel_id = 5").fetchone()
    assert total == pytest.approx(reg[0], rel=1e-9)  # type: ignore[index]
    again = run_billing(db_url, _opts(kind="vee"))
    assert again.run_id != result.run_id
    assert db_conn.execute("SELECT count(*) FROM amiflow.vee_intervals").fetchone() == (97,)


def test_ratchet_takes_the_peak_of_earlier_bills(db_url: str, db_conn: psycopg.Connection[Any]) -> None:
    for spec in load_tariff(TARIFF.with_name("commercial_tou_demand.toml")):
        store_tariff(db_conn, spec)
    seed_meter(db_conn, "R", tariff="com-tou-demand", register_factor=None, seed=5)
    db_conn.execute(  # an hour at 20 kW on 2024-02-20 (5 kWh per quarter hour)
        "UPDATE amiflow.readings SET value = 5000 WHERE channel_id = 1"
        " AND ts > '2024-02-20T20:00:00Z' AND ts <= '2024-02-20T21:00:00Z'"
    )
    run_billing(db_url, _opts(period=date(2024, 2, 1)))
    run_billing(db_url, _opts())
    feb, mar = (
        r[0]
        for r in db_conn.execute("SELECT body FROM amiflow.bills WHERE meter = 'R' ORDER BY period_start").fetchall()
    )
    assert feb["determinants"]["peak_kw"]["facility_demand"]["all"] == "20.000"
    assert float(mar["determinants"]["peak_kw"]["facility_demand"]["all"]) < 1.0
    assert mar["determinants"]["billed_kw"]["facility_demand"]["all"] == "16.000"  # 80 % of February's peak


def test_kill_9_mid_run_then_resume_from_the_cli(db_url: str, db_conn: psycopg.Connection[Any]) -> None:
    _tariff(db_conn)
    for k in range(24):
        seed_meter(db_conn, f"K{k:02d}", seed=100 + k)
    env = {**os.environ, "AMIFLOW_DATABASE_URL": db_url, "AMIFLOW_BILLING_BLOCK_METERS": "1"}
    cmd = [sys.executable, "-m", "amiflow_app", "bill", "run", "--period", "2024-03", "--workers", "0", "--json"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        done = 0
        while time.monotonic() < deadline and done < 3:
            time.sleep(0.02)
            row = db_conn.execute(
                "SELECT count(*) FILTER (WHERE state = 'done') FROM amiflow.bill_run_blocks"
            ).fetchone()
            done = int(row[0]) if row else 0
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(10)
    blocks = db_conn.execute("SELECT count(*), count(*) FILTER (WHERE state = 'done') FROM amiflow.bill_run_blocks")
    total, committed = blocks.fetchone()  # type: ignore[misc]
    assert total == 24 and 3 <= committed < 24, "the kill must land mid-run"
    assert db_conn.execute("SELECT status FROM amiflow.bill_runs").fetchone() == ("running",)
    assert db_conn.execute("SELECT count(*) FROM amiflow.bills").fetchone() == (committed,)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=True)
    summary = json.loads(out.stdout)
    assert summary["resumed"] is True and summary["meters_billed"] == 24
    assert db_conn.execute("SELECT count(*), count(DISTINCT bill_id) FROM amiflow.bills").fetchone() == (24, 24)
    assert db_conn.execute("SELECT count(*) FROM amiflow.outbox").fetchone() == (24,)
    assert db_conn.execute("SELECT status FROM amiflow.bill_runs").fetchone() == ("done",)
