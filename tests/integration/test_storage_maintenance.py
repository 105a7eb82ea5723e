"""Storage kept healthy by amiflow itself: `amiflow db maintain` and the serve storage component pack settled days and
refresh the plain-PostgreSQL rollup on a schedule; on TimescaleDB they run the compression and rollup jobs when the
extension does not (those tests skip, saying why, where TimescaleDB is absent)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest

from amiflow.db.maintenance import MaintainOptions, maintain
from amiflow.db.writer import BatchWriter
from amiflow.settings import load_settings
from amiflow.types import ReadingBatch
from amiflow_app.serve.components import StorageComponent
from amiflow_app.serve.supervisor import Service


def _readings(conn: psycopg.Connection[Any], first: date, days: int, meters: int = 3) -> None:
    lo = int(datetime(first.year, first.month, first.day, tzinfo=UTC).timestamp())
    ts = lo + 900 * np.arange(1, days * 96 + 1, dtype=np.int64)
    writer = BatchWriter(conn)
    for k in range(meters):
        name = f"S{k}"
        conn.execute("INSERT INTO amiflow.meters (name, protocol) VALUES (%s, 'mqtt') ON CONFLICT DO NOTHING", (name,))
        writer.write(ReadingBatch.from_columns(name, "1-0:1.29.0", ts, np.full(len(ts), 250.0), unit="Wh"))


def test_a_pass_packs_settled_days_and_refreshes_the_rollup(db_conn: psycopg.Connection[Any]) -> None:
    today = datetime.now(UTC).date()
    _readings(db_conn, today - timedelta(days=3), 4)  # three whole days and today, which is not settled
    plain = db_conn.execute("SELECT value FROM amiflow.storage_config WHERE key = 'backend'").fetchone() != (
        "timescaledb",
    )
    if plain:  # (TimescaleDB's real-time aggregate answers from the readings before any refresh)
        assert db_conn.execute("SELECT count(*) FROM amiflow.v_daily_energy").fetchone() == (0,)
    first = maintain(db_conn, MaintainOptions(lookback_days=5))
    assert first.backend in ("partitioned", "timescaledb") and not first.errors
    assert first.packed.days == 5 and first.packed.packs == 3 * 3 and first.packed.readings == 3 * 3 * 96
    if first.backend == "partitioned":
        assert first.rollup_refreshed and first.problems == []
        rows = db_conn.execute("SELECT meter, kwh_import FROM amiflow.v_daily_energy ORDER BY day, meter").fetchall()
        assert rows[:3] == [("S0", 24.0), ("S1", 24.0), ("S2", 24.0)]
    second = maintain(db_conn, MaintainOptions(lookback_days=5))
    assert second.packed.days == 0 and not second.rollup_refreshed  # packed days stay; the rollup is fresh
    assert maintain(db_conn, MaintainOptions(lookback_days=5, rollup_every_s=0)).rollup_refreshed is (
        first.backend == "partitioned"
    )
    runs = db_conn.execute("SELECT task, ok FROM amiflow.maintenance_runs ORDER BY id").fetchall()
    assert ("pack", True) in runs


def test_one_pass_at_a_time(db_url: str, db_conn: psycopg.Connection[Any]) -> None:
    with psycopg.connect(db_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (0x616D69666C6F78,))
        assert maintain(db_conn).skipped
        other.execute("SELECT pg_advisory_unlock(%s)", (0x616D69666C6F78,))
    assert not maintain(db_conn).skipped


def test_db_maintain_from_the_cli(db_url: str, db_conn: psycopg.Connection[Any]) -> None:
    _readings(db_conn, date(2026, 1, 10), 2)
    env = {**os.environ, "AMIFLOW_DATABASE_URL": db_url}
    cmd = [sys.executable, "-m", "amiflow_app", "db", "maintain", "--since", "2026-01-09", "--rollup-every", "0"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=True)
    assert "6 packs of 576 readings" in out.stdout
    assert "rollup energy_hourly refreshed" in out.stdout or "policy_refresh_continuous_aggregate" in out.stdout
    report = json.loads(subprocess.run([*cmd, "--json"], env=env, capture_output=True, text=True, timeout=120,
                                       check=True).stdout)  # fmt: skip
    assert report["packed"]["days"] == 0 and report["errors"] == []


def test_the_serve_component_reports_in_health_and_metrics(db_url: str, tmp_path: Path) -> None:
    settings = load_settings(database_url=db_url, http_port=0, api_token="t", data_dir=tmp_path)
    with Service(settings, ["storage", "api"], storage_interval_s=0.2) as service:
        deadline = time.monotonic() + 30
        while "amiflow_storage_passes_total 2" not in (text := httpx.get(service.url + "/metrics").text):
            assert time.monotonic() < deadline, text
            time.sleep(0.1)
        health = httpx.get(service.url + "/health").json()
    # healthy on both backends: TimescaleDB jobs its scheduler fails to run are run by amiflow and only noted
    assert health["status"] == "ok" and health["components"]["storage"] == "ok", health
    notes = health["notes"]
    assert set(notes) <= {"storage"} and all("TimescaleDB job" in n for n in notes.values()), notes
    assert "amiflow_storage_pack_dirty 0" in text and "amiflow_storage_last_pass_timestamp_seconds" in text


def test_a_failed_pass_is_a_problem_until_one_succeeds(
    db_url: str, db_conn: psycopg.Connection[Any], pg_server_url: str
) -> None:
    comp = StorageComponent(load_settings(database_url=db_url), db_url)
    name = db_conn.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        try:
            comp.run_once()
        finally:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
    problem = comp.problem()
    assert problem is not None and problem.startswith("maintenance failed")
    assert "amiflow_storage_errors_total 1" in comp.prometheus()
    comp.run_once()
    assert comp.problem() is None
    assert "amiflow_storage_passes_total 1" in comp.prometheus()


# -- TimescaleDB only ------------------------------------------------------------------------------------------------


def _jobs(conn: psycopg.Connection[Any]) -> dict[str, int]:
    rows = conn.execute(
        "SELECT proc_name, job_id FROM timescaledb_information.jobs WHERE proc_name LIKE 'policy_%'"
        " AND hypertable_schema = 'amiflow'"
    ).fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


@pytest.mark.usefixtures("timescaledb")
def test_jobs_the_extension_does_not_run_are_run_by_amiflow(db_url: str, db_conn: psycopg.Connection[Any]) -> None:
    _readings(db_conn, datetime.now(UTC).date() - timedelta(days=24), 14)  # chunks older than compress_after
    jobs = _jobs(db_conn)
    assert set(jobs) == {"policy_compression", "policy_refresh_continuous_aggregate"}
    for job_id in jobs.values():  # as if the scheduler never ran them: unscheduled and due
        db_conn.execute("SELECT alter_job(%s, scheduled => false, next_start => now() - interval '1 hour')", (job_id,))
    report = maintain(db_conn, MaintainOptions(pack=False))
    assert sorted(report.jobs_run) == sorted(jobs.values()) and not report.errors
    # the extension does not run them, amiflow does: noted, not a problem (a load balancer must not pull serve)
    assert all(j.problem for j in report.jobs) and not report.problems
    assert sorted(report.covered_jobs) == sorted(jobs.values()) and all("amiflow ran it" in c for c in report.covered)
    compressed = db_conn.execute(
        "SELECT count(*) FILTER (WHERE is_compressed), count(*) FROM timescaledb_information.chunks"
        " WHERE hypertable_name = 'readings'"
    ).fetchone()
    assert compressed is not None and compressed[0] >= 1
    energy = db_conn.execute("SELECT sum(kwh_import) FROM amiflow.v_daily_energy").fetchone()
    assert energy == (3 * 14 * 24.0,)
    comp = StorageComponent(load_settings(database_url=db_url), db_url)
    comp.run_once()  # within the jobs' schedule since amiflow ran them: not run again, still covered
    assert comp.last.jobs_run == [] and comp.problem() is None
    assert comp.note() is not None and comp.note().count("amiflow runs it") == 2  # type: ignore[union-attr]
    text = comp.prometheus()
    for proc, job_id in jobs.items():
        labels = f'{{job="{job_id}",proc="{proc}",relation='
        assert re.search(rf"^amiflow_storage_timescaledb_job_ok{re.escape(labels)}\S+ 0$", text, re.M), text
        assert re.search(rf"^amiflow_storage_timescaledb_job_covered{re.escape(labels)}\S+ 1$", text, re.M), text


@pytest.mark.usefixtures("timescaledb")
def test_failing_jobs_amiflow_may_not_run_are_a_problem(db_conn: psycopg.Connection[Any]) -> None:
    for job_id in _jobs(db_conn).values():
        db_conn.execute("SELECT alter_job(%s, scheduled => false, next_start => now() - interval '1 hour')", (job_id,))
    report = maintain(db_conn, MaintainOptions(pack=False, run_failing_jobs=False))
    assert not report.jobs_run and not report.covered and len(report.problems) == 2


@pytest.mark.usefixtures("timescaledb")
def test_packed_reads_from_compressed_chunks_equal_row_reads(db_conn: psycopg.Connection[Any]) -> None:
    from amiflow.db.reader import read_intervals

    first = datetime.now(UTC).date() - timedelta(days=40)
    _readings(db_conn, first, 14)
    lo = datetime(first.year, first.month, first.day, 5, tzinfo=UTC)
    names = ["S0", "S1", "S2", "NOPE"]
    before = read_intervals(db_conn, names, "1-0:1.29.0", lo, lo + timedelta(days=12))
    db_conn.execute("SELECT compress_chunk(c) FROM show_chunks('amiflow.readings', older_than => interval '7 days') c")
    compressed = read_intervals(db_conn, names, "1-0:1.29.0", lo, lo + timedelta(days=12))
    maintain(db_conn, MaintainOptions(pack_since=first, run_failing_jobs=False))
    packed = read_intervals(db_conn, names, "1-0:1.29.0", lo, lo + timedelta(days=12))
    for got in (compressed, packed):
        assert np.array_equal(got.values, before.values, equal_nan=True) and np.array_equal(got.present, before.present)
