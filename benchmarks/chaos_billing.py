"""The billing half of the chaos run, on the private PostgreSQL of ``benchmarks/chaos.py``:

1. ``amiflow bill run --dask`` on a real cluster (``dask scheduler`` and two ``dask worker`` processes without a
   nanny); one worker is killed -9 while it rates a block, the scheduler hands its work to the other;
2. ``amiflow bridge run`` delivering the bills to ``python -m billing_bridge.receiver`` (503s on a seeded share of
   requests), killed -9 mid-delivery and started again.

Afterwards every account has exactly one bill for the month and one outbox item for it, every item is delivered,
and the receiver holds exactly one delivery per item (a bill re-sent after the kill has the same key and the same
body: an idempotent repeat, counted, never a second effect or a conflict).
"""

from __future__ import annotations

import json
import shutil
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script by `make bench`: a no-op

from amiflow.db.migrate import migrate
from benchmarks.billing_run import seed
from benchmarks.chaos_services import Postgres, Process, child_env, free_port, wait_until

__all__ = ["BillingChaos"]

SECRET = "chaos-billing-secret"


@dataclass
class BillingChaos:
    """One run; :meth:`run` returns the counts, ``failures`` says what broke an invariant."""

    root: Path
    pg: Postgres
    quick: bool
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def meters(self) -> int:
        return 120 if self.quick else 2000

    def _expect(self, ok: bool, failure: str) -> None:
        if not ok:
            self.failures.append(failure)

    def _db(self) -> str:
        url = self.pg.url("chaos_bill")
        with psycopg.connect(self.pg.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE chaos_bill")
        migrate(url)
        seed(url, self.meters)
        return url

    def run(self) -> dict[str, Any]:
        url = self._db()
        counts = self._bill_run(url)
        counts |= self._deliver(url)
        return counts

    # -- the billing run on a Dask cluster, one worker killed ---------------------------------------------------
    def _cluster(self, env: dict[str, str]) -> tuple[str, list[Process]]:
        dask = shutil.which("dask", path=str(Path(sys.executable).parent)) or "dask"
        port = free_port()
        address = f"tcp://127.0.0.1:{port}"
        procs = [Process("dask-scheduler", [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                            "--no-dashboard"], env, self.root / "dask-scheduler.log")]  # fmt: skip
        for i in range(2):
            cmd = [dask, "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard", "--name", f"w{i}"]
            procs.append(Process(f"dask-worker-{i}", cmd, env, self.root / f"dask-worker-{i}.log"))
        procs[0].start()
        wait_until(lambda: procs[0].has("Scheduler at:"), 30)
        for p in procs[1:]:
            p.start()
        ready = wait_until(lambda: all(p.has("Starting established connection") for p in procs[1:]), 60)
        self._expect(ready, "the Dask workers did not join the scheduler")
        return address, procs

    def _bill_run(self, url: str) -> dict[str, Any]:
        block = 15 if self.quick else 100
        env = child_env(AMIFLOW_DATABASE_URL=url, AMIFLOW_BILLING_BLOCK_METERS=str(block))
        address, cluster = self._cluster(env)
        try:
            run = Process.amiflow("bill-run", ["bill", "run", "--period", "2024-03", "--dask", address, "--json"],
                                  env, self.root / "bill-run.log").start()  # fmt: skip
            mid = wait_until(
                lambda: 0 < _count(url, "SELECT count(*) FROM amiflow.bills") < self.meters // 2, 120, 0.05
            )
            cluster[1].kill()  # a worker dies with its block half rated; the scheduler moves the work
            killed_at = _count(url, "SELECT count(*) FROM amiflow.bills")
            self._expect(mid and killed_at < self.meters, f"the worker kill landed after the run ({killed_at} bills)")
            finished = wait_until(lambda: not run.alive, 300)
            code = run.proc.returncode if run.proc else None
            self._expect(finished and code == 0, f"bill run --dask exit {code}: {run.text()[-1500:]}")
        finally:
            for p in reversed(cluster):
                p.stop(20)
        bills = _count(url, "SELECT count(*) FROM amiflow.bills")
        accounts = _count(url, "SELECT count(DISTINCT (account, period_start)) FROM amiflow.bills")
        items = _count(url, "SELECT count(*) FROM amiflow.outbox WHERE kind = 'bill'")
        keys = _count(url, "SELECT count(DISTINCT idempotency_key) FROM amiflow.outbox WHERE kind = 'bill'")
        self._expect(bills == accounts == self.meters, f"{bills} bills for {accounts} of {self.meters} accounts")
        self._expect(items == keys == bills, f"{items} outbox items ({keys} keys) for {bills} bills")
        return {"meters": self.meters, "bills": bills, "bill_items": items, "bills_at_kill": killed_at}

    # -- the bridge, killed mid-delivery ------------------------------------------------------------------------
    def _deliver(self, url: str) -> dict[str, Any]:
        port = free_port()
        receiver = Process("receiver", [sys.executable, "-m", "billing_bridge.receiver", "--port", str(port),
                                        "--secret", SECRET, "--seed", "3", "--fail-rate", "0.05",
                                        "--delay-max", "0.01"], child_env(), self.root / "receiver.log")  # fmt: skip
        receiver.start()
        wait_until(lambda: receiver.has("LISTENING"), 20)
        stats_url = f"http://127.0.0.1:{port}/_stats"
        env = child_env(AMIFLOW_DATABASE_URL=url, AMIFLOW_BILLING_URL=f"http://127.0.0.1:{port}",
                        AMIFLOW_BILLING_SECRET=SECRET, AMIFLOW_BRIDGE_RETRY_BASE_S="0.05",
                        AMIFLOW_BRIDGE_RETRY_MAX_S="0.5")  # fmt: skip
        args = ["bridge", "run", "--lease", "3", "--timeout", "0.8", "--concurrency", "4", "--batch", "20"]
        items = _count(url, "SELECT count(*) FROM amiflow.outbox")
        try:
            bridge = Process.amiflow("bridge", args, env, self.root / "bridge.log").start()
            mid = wait_until(lambda: _stats(stats_url).get("keys", 0) >= items // 4, 120, 0.02)
            bridge.kill()
            at_kill = _stats(stats_url).get("keys", 0)
            self._expect(mid and at_kill < items, f"the bridge kill landed after the delivery ({at_kill} of {items})")
            again = Process.amiflow("bridge", args, env, self.root / "bridge.log").start()
            finished = wait_until(lambda: not again.alive, 300)
            code = again.proc.returncode if again.proc else None
            self._expect(finished and code == 0, f"bridge run after the kill exit {code}: {again.text()[-1500:]}")
            stats = _stats(stats_url)
        finally:
            receiver.stop(10)
        delivered = _count(url, "SELECT count(*) FROM amiflow.outbox WHERE state = 'delivered'")
        self._expect(delivered == items, f"{delivered} of {items} outbox items delivered")
        self._expect(stats.get("keys") == items, f"the receiver holds {stats.get('keys')} of {items} deliveries")
        self._expect(stats.get("conflicts") == 0 and stats.get("overlaps") == 0, f"receiver conflicts: {stats}")
        self._expect(stats.get("bad_signatures") == 0, f"receiver refused signatures: {stats}")
        return {
            "outbox_items": items,
            "delivered": delivered,
            "receiver_keys": stats.get("keys", 0),
            "receiver_repeats": int(stats.get("stored", 0)) - int(stats.get("keys", 0)),
            "receiver_conflicts": stats.get("conflicts", 0),
            "delivered_at_kill": at_kill,
        }


def _count(url: str, sql: str) -> int:
    with psycopg.connect(url, connect_timeout=5) as conn:
        row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0


def _stats(url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            data: dict[str, Any] = json.loads(response.read())
            return data
    except OSError:
        return {}
