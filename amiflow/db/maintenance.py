"""Keeping storage healthy from amiflow itself (``amiflow db maintain`` for cron, the ``storage`` component of
``amiflow serve``), on both backends:

* packed days (:mod:`amiflow.db.packing`): pack the days that have settled, repack the meter-days written since;
* plain PostgreSQL: refresh the ``energy_hourly`` rollup behind ``v_daily_energy`` when it is older than
  ``rollup_every_s`` (nothing else refreshes it), and keep native partitions ahead of time;
* TimescaleDB: the compression and continuous-aggregate policies are the extension's background jobs. When its
  scheduler is absent, or a job's last run failed (``timescaledb_information.job_errors`` / ``job_stats``), or a
  job is overdue, amiflow runs the due job in the foreground (``CALL run_job(id)``, which works where the background
  worker does not). A job amiflow keeps running so is reported as ``covered`` (a note in ``/health``, the
  ``job_ok`` / ``job_covered`` gauges in ``/metrics``, a line of the command's output); it is a problem (``/health``
  degraded) only when amiflow cannot run it either, or is told not to (``run_failing_jobs=False``).

One pass at a time per database (a session advisory lock); each task of a pass is recorded in
``amiflow.maintenance_runs``. Needs an autocommit connection outside a transaction (``run_job`` and the rollup
refresh commit by themselves).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from amiflow.db.packing import PackResult, pack_days
from amiflow.db.rollup import refresh_rollups
from amiflow.errors import StorageError

__all__ = ["JobHealth", "MaintainOptions", "MaintenanceReport", "job_health", "maintain", "scheduler_running"]

log = logging.getLogger(__name__)

_LOCK_KEY = 0x616D69666C6F78  # "amiflox": one maintenance pass per database
_POLICIES = ("policy_compression", "policy_refresh_continuous_aggregate")


@dataclass(frozen=True, slots=True)
class MaintainOptions:
    """What a pass does: pack days since ``pack_since`` (default: the last ``lookback_days``) that ended
    ``settle_s`` ago; refresh the plain rollup when older than ``rollup_every_s`` (0 = every pass)."""

    pack: bool = True
    pack_since: date | None = None
    lookback_days: int = 3
    settle_s: int = 3600
    rollup_every_s: int = 3600
    run_failing_jobs: bool = True
    now: datetime | None = None


@dataclass(frozen=True, slots=True)
class JobHealth:
    """One TimescaleDB policy job of amiflow's storage and what is wrong with it (``problem`` None = healthy)."""

    job_id: int
    proc_name: str
    relation: str
    scheduled: bool
    last_status: str | None
    last_success: datetime | None  # by the extension's scheduler or by amiflow
    next_start: datetime | None
    failures: int
    last_error: str | None
    due: bool
    problem: str | None


@dataclass(slots=True)
class MaintenanceReport:
    """What a pass found and did."""

    backend: str
    skipped: bool = False  # another pass holds the lock
    packed: PackResult = field(default_factory=PackResult)
    rollup_refreshed: bool = False
    rollup_s: float = 0.0
    rollup_age_s: float | None = None
    dirty: int = 0  # meter-days waiting to be repacked after the pass
    scheduler: bool | None = None  # TimescaleDB's job scheduler seen running (None: plain PostgreSQL)
    jobs: list[JobHealth] = field(default_factory=list)
    jobs_run: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what is wrong with the storage (e.g. failing jobs)
    covered: list[str] = field(default_factory=list)  # jobs the extension fails to run that amiflow runs instead
    covered_jobs: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # what amiflow tried and could not do
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["jobs"] = [{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(j).items()}
                       for j in self.jobs]  # fmt: skip
        return out


def _backend(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SELECT value FROM amiflow.storage_config WHERE key = 'backend'").fetchone()
    return str(row[0]) if row else "partitioned"


def scheduler_running(conn: psycopg.Connection[Any]) -> bool:
    """Whether TimescaleDB's per-database job scheduler runs for this database."""
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND backend_type LIKE 'TimescaleDB Background Worker Scheduler%'"
    ).fetchone()
    return bool(row and row[0])


def job_health(conn: psycopg.Connection[Any], *, scheduler: bool) -> list[JobHealth]:
    """amiflow's compression and rollup policy jobs, each with what is wrong with it."""
    rows = conn.execute(
        "SELECT j.job_id, j.proc_name, coalesce(ca.view_name, j.hypertable_name), j.scheduled, s.last_run_status,"
        " ok.last, CASE WHEN isfinite(s.next_start) THEN s.next_start END, coalesce(s.total_failures, 0),"
        " (SELECT e.err_message FROM timescaledb_information.job_errors e WHERE e.job_id = j.job_id"
        "  ORDER BY e.finish_time DESC LIMIT 1),"
        # due: no successful run (by the scheduler, or by amiflow in the foreground) within the schedule interval
        " ok.last IS NULL OR ok.last <= now() - j.schedule_interval,"
        " coalesce(s.next_start, now()) < now() - greatest(j.schedule_interval, interval '5 minutes')"
        " FROM timescaledb_information.jobs j"
        " LEFT JOIN timescaledb_information.job_stats s ON s.job_id = j.job_id"
        " LEFT JOIN timescaledb_information.continuous_aggregates ca"
        "   ON ca.materialization_hypertable_schema = j.hypertable_schema"
        "  AND ca.materialization_hypertable_name = j.hypertable_name"
        # a job that never succeeded has last_successful_finish = -infinity (greatest() skips the NULL)
        " CROSS JOIN LATERAL (SELECT greatest(CASE WHEN isfinite(s.last_successful_finish)"
        "   THEN s.last_successful_finish END, (SELECT max(m.finished_at) FROM amiflow.maintenance_runs m"
        "   WHERE m.task = 'job:' || j.proc_name AND m.ok AND (m.detail->>'job_id')::int = j.job_id)) AS last) ok"
        " WHERE j.proc_name = ANY(%s) AND (j.hypertable_schema = 'amiflow' OR ca.view_schema = 'amiflow')"
        " ORDER BY j.job_id",
        (list(_POLICIES),),
    ).fetchall()
    out = []
    for job_id, proc, rel, scheduled, status, success, next_start, failures, error, due, overdue in rows:
        problem = None
        if status == "Failed":  # the extension's own last run (amiflow's foreground runs are not counted here)
            problem = f"last run failed: {(error or 'see timescaledb_information.job_errors').strip()[:200]}"
        elif not scheduler:
            problem = "TimescaleDB's job scheduler is not running for this database"
        elif overdue:
            problem = f"overdue since {next_start:%Y-%m-%d %H:%M} UTC"
        elif not scheduled:
            problem = "not scheduled"
        out.append(JobHealth(int(job_id), str(proc), str(rel), bool(scheduled), status, success, next_start,
                             int(failures), error, bool(due), problem))  # fmt: skip
    return out


def _record(conn: psycopg.Connection[Any], task: str, ok: bool, started: float, detail: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO amiflow.maintenance_runs (started_at, finished_at, task, ok, detail)"
        " VALUES (now() - make_interval(secs => %s), now(), %s, %s, %s)",
        (time.perf_counter() - started, task, ok, Jsonb(detail)),
    )


def _rollup_age_s(conn: psycopg.Connection[Any]) -> float | None:
    row = conn.execute(
        "SELECT extract(epoch FROM now() - max(finished_at)) FROM amiflow.maintenance_runs WHERE task = 'rollup' AND ok"
    ).fetchone()
    return float(row[0]) if row and row[0] is not None else None


def _plain(conn: psycopg.Connection[Any], opts: MaintainOptions, report: MaintenanceReport) -> None:
    conn.execute(
        "SELECT amiflow.ensure_partitions(now(), now() + w * 2) FROM (SELECT value::interval AS w"
        " FROM amiflow.storage_config WHERE key = 'chunk_interval') s"
    )
    age = _rollup_age_s(conn)
    report.rollup_age_s = age
    if age is not None and age < opts.rollup_every_s:
        return
    started = time.perf_counter()
    try:
        refresh_rollups(conn)
    except psycopg.Error as exc:
        report.errors.append(f"rollup refresh failed: {str(exc).strip()[:200]}")
        _record(conn, "rollup", False, started, {"error": str(exc).strip()})
        return
    report.rollup_refreshed, report.rollup_s, report.rollup_age_s = True, time.perf_counter() - started, 0.0
    _record(conn, "rollup", True, started, {"seconds": report.rollup_s})


def _timescaledb(conn: psycopg.Connection[Any], opts: MaintainOptions, report: MaintenanceReport) -> None:
    report.scheduler = scheduler_running(conn)
    report.jobs = job_health(conn, scheduler=report.scheduler)
    for job in report.jobs:
        if job.problem is None:
            continue
        text = f"TimescaleDB job {job.job_id} ({job.proc_name} on {job.relation}): {job.problem}"
        if not opts.run_failing_jobs:
            report.problems.append(text)
            continue
        if not job.due:  # amiflow ran it within its schedule interval: the storage is kept, the extension is not
            report.covered.append(f"{text}; amiflow runs it")
            report.covered_jobs.append(job.job_id)
            continue
        started = time.perf_counter()
        try:
            conn.execute("CALL run_job(%s)", (job.job_id,))
        except psycopg.Error as exc:
            message = str(exc).strip().split("\n")[0][:200]
            report.problems.append(text)
            report.errors.append(f"amiflow could not run job {job.job_id} either: {message}")
            _record(conn, f"job:{job.proc_name}", False, started, {"job_id": job.job_id, "error": message})
            continue
        report.covered.append(f"{text}; amiflow ran it")
        report.covered_jobs.append(job.job_id)
        report.jobs_run.append(job.job_id)
        _record(conn, f"job:{job.proc_name}", True, started, {"job_id": job.job_id, "reason": job.problem})
        log.warning("ran TimescaleDB job %d (%s) in the foreground: %s", job.job_id, job.proc_name, job.problem)


def maintain(conn: psycopg.Connection[Any], opts: MaintainOptions | None = None) -> MaintenanceReport:
    """One maintenance pass (see the module docstring); StorageError when the database fails."""
    opts = opts or MaintainOptions()
    started = time.perf_counter()
    try:
        report = MaintenanceReport(_backend(conn))
        if conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_KEY,)).fetchone() != (True,):
            report.skipped = True
            return report
        try:
            if opts.pack:
                t = time.perf_counter()
                report.packed = pack_days(conn, since=opts.pack_since, lookback_days=opts.lookback_days,
                                          settle_s=opts.settle_s, now=opts.now)  # fmt: skip
                _record(conn, "pack", True, t, asdict(report.packed))
            row = conn.execute("SELECT count(*) FROM amiflow.pack_dirty").fetchone()
            report.dirty = int(row[0]) if row else 0
            if report.backend == "timescaledb":
                _timescaledb(conn, opts, report)
            else:
                _plain(conn, opts, report)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    except psycopg.Error as exc:
        raise StorageError(f"storage maintenance failed: {str(exc).strip()}") from exc
    report.seconds = time.perf_counter() - started
    return report
