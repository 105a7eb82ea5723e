"""The storage component of ``amiflow serve``: a maintenance pass (:func:`amiflow.db.maintenance.maintain`) every
``interval_s`` in a worker thread: pack settled days, refresh the plain-PostgreSQL rollup on its schedule, and run
TimescaleDB's compression / rollup jobs in the foreground when the extension's scheduler is absent or they fail.

``problem()`` (``/health`` degraded) names any maintenance step that failed and the TimescaleDB jobs that fail or are
overdue and that amiflow could not run either; ``note()`` (``/health`` notes, not degraded) names the jobs the
extension fails to run and amiflow runs instead. ``prometheus()`` exports the pass counters, the rollup's age, the
dirty meter-days waiting to be repacked and per job ``amiflow_storage_timescaledb_job_ok`` (the extension runs it) and
``amiflow_storage_timescaledb_job_covered`` (amiflow runs it instead).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from amiflow.settings import Settings
from amiflow_app.serve.components.threads import counters, in_thread, wait

__all__ = ["StorageComponent"]

_HELP = {
    "passes": "storage maintenance passes completed",
    "days_packed": "UTC days packed for the billing read",
    "meter_days_repacked": "meter-days repacked after late readings",
    "readings_packed": "readings written into packed days",
    "rollup_refreshes": "refreshes of the energy_hourly rollup (plain PostgreSQL)",
    "jobs_run": "TimescaleDB policy jobs amiflow ran itself because the extension's scheduler did not",
    "errors": "maintenance steps that failed",
}


def _gauge(name: str, help_: str, lines: list[str]) -> str:
    return f"# HELP {name} {help_}\n# TYPE {name} gauge\n" + "".join(f"{line}\n" for line in lines)


class StorageComponent:
    """Storage maintenance every ``interval_s`` (first pass right after start)."""

    name = "storage"

    def __init__(self, settings: Settings, db_url: str, *, interval_s: float = 300.0, **options: Any) -> None:
        from amiflow.db.maintenance import MaintainOptions

        self._settings = settings
        self._db_url = db_url
        self._interval_s = interval_s
        self._options = MaintainOptions(**options)
        self.counts: dict[str, int] = dict.fromkeys(_HELP, 0)
        self.last: Any = None  # the last MaintenanceReport
        self.last_run_at = 0.0
        self._error: str | None = None

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await in_thread(self.run_once, "serve-storage")
            if await wait(stop, self._interval_s):
                return

    def run_once(self) -> None:
        """One maintenance pass (blocking). A failed pass is reported in ``problem()``; the next one retries."""
        import psycopg

        from amiflow.db.maintenance import maintain
        from amiflow.errors import StorageError

        try:
            with psycopg.connect(self._db_url, autocommit=True, application_name="amiflow-serve-storage") as conn:
                report = maintain(conn, self._options)
        except (StorageError, psycopg.Error) as exc:
            self._error = f"maintenance failed: {str(exc).strip()[:200]}"
            self.counts["errors"] += 1
            return
        self._error = None
        self.last, self.last_run_at = report, time.time()
        if report.skipped:
            return
        self.counts["passes"] += 1
        self.counts["days_packed"] += report.packed.days
        self.counts["meter_days_repacked"] += report.packed.repacked
        self.counts["readings_packed"] += report.packed.readings
        self.counts["rollup_refreshes"] += int(report.rollup_refreshed)
        self.counts["jobs_run"] += len(report.jobs_run)
        self.counts["errors"] += len(report.errors)

    def problem(self) -> str | None:
        issues = [self._error] if self._error else []
        if self.last is not None:
            issues += self.last.errors + self.last.problems
        return "; ".join(issues)[:500] if issues else None

    def note(self) -> str | None:
        """What is wrong but taken care of: TimescaleDB jobs amiflow runs because the extension does not."""
        covered = self.last.covered if self.last is not None else []
        return "; ".join(covered)[:500] if covered else None

    def prometheus(self) -> str:
        out = [counters("amiflow_storage", _HELP, self.counts)]
        out.append(_gauge("amiflow_storage_last_pass_timestamp_seconds", "when the last maintenance pass finished",
                          [f"amiflow_storage_last_pass_timestamp_seconds {self.last_run_at:.0f}"]))  # fmt: skip
        report = self.last
        if report is None:
            return "".join(out)
        name = "amiflow_storage_pack_dirty"
        out.append(_gauge(name, "meter-days written after packing, read from rows until repacked",
                          [f"{name} {report.dirty}"]))  # fmt: skip
        if report.rollup_age_s is not None:
            name = "amiflow_storage_rollup_age_seconds"
            out.append(_gauge(name, "seconds since energy_hourly was refreshed", [f"{name} {report.rollup_age_s:.0f}"]))
        if report.scheduler is not None:
            name = "amiflow_storage_timescaledb_scheduler_up"
            out.append(_gauge(name, "1 while TimescaleDB's job scheduler runs for this database",
                              [f"{name} {int(report.scheduler)}"]))  # fmt: skip
            name = "amiflow_storage_timescaledb_job_ok"
            lines = [f'{name}{{job="{j.job_id}",proc="{j.proc_name}",relation="{j.relation}"}} {int(j.problem is None)}'
                     for j in report.jobs]  # fmt: skip
            out.append(_gauge(name, "1 while the policy job runs by itself (0: failing or overdue)", lines))
            name = "amiflow_storage_timescaledb_job_covered"
            lines = [f'{name}{{job="{j.job_id}",proc="{j.proc_name}",relation="{j.relation}"}} '
                     f"{int(j.job_id in report.covered_jobs)}" for j in report.jobs]  # fmt: skip
            out.append(_gauge(name, "1 while amiflow runs the failing or overdue policy job itself", lines))
        return "".join(out)
