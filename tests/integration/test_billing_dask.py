"""The billing run on a real Dask cluster started with the distributed CLI: a `dask scheduler` and two `dask worker`
processes (each keeps its own database connection). `amiflow bill run --dask ADDRESS` bills like the local run, and
a worker killed in the middle of a block loses no block and doubles no bill: the scheduler reruns the block."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from rating.billing_run import RunOptions, RunResult, run_billing
from tests.integration.test_billing_run import PERIOD, _bills, _tariff, seed_meter

pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parents[2]
DASK = Path(sys.executable).with_name("dask")


@dataclass
class Cluster:
    address: str
    workers: list[subprocess.Popen[bytes]]


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.Popen([str(DASK), *args], cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def _wait_workers(address: str, n: int, timeout_s: float = 60) -> None:
    from distributed import Client

    with Client(address, timeout=timeout_s) as client:  # type: ignore[no-untyped-call]
        client.wait_for_workers(n, timeout=timeout_s)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A scheduler on an OS-assigned port and two single-threaded workers without nannies (a killed worker stays
    dead), all real processes of the distributed CLI."""
    if not DASK.exists():
        pytest.skip(f"the dask CLI is not installed next to {sys.executable}")
    info = tmp_path / "scheduler.json"
    procs = [_start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file",
                     str(info)], tmp_path / "scheduler.log")]  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not info.exists() or not info.read_text().strip():
            assert procs[0].poll() is None, (tmp_path / "scheduler.log").read_text()
            assert time.monotonic() < deadline, "the scheduler did not start"
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        worker = ["worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard", "--name"]
        workers = [_start([*worker, f"w{k}"], tmp_path / f"worker{k}.log") for k in range(2)]
        procs += workers
        _wait_workers(address, 2)
        yield Cluster(address, workers)
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _fleet(conn: psycopg.Connection[Any], n: int) -> None:
    _tariff(conn)
    for k in range(n):
        seed_meter(conn, f"D{k:02d}", seed=200 + k)


def _opts(**over: Any) -> RunOptions:
    return RunOptions(**{"period": PERIOD, "block_meters": 1, "progress": False, "workers": 0, **over})


def test_bill_run_on_the_cluster_from_the_cli(db_url: str, db_conn: psycopg.Connection[Any], cluster: Cluster) -> None:
    _fleet(db_conn, 4)
    run_billing(db_url, _opts())
    local = _bills(db_conn)
    db_conn.execute("TRUNCATE amiflow.outbox, amiflow.bills, amiflow.bill_runs CASCADE")
    env = {**os.environ, "AMIFLOW_DATABASE_URL": db_url, "AMIFLOW_BILLING_BLOCK_METERS": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "amiflow_app", "bill", "run", "--period", "2024-03", "--dask", cluster.address,
         "--json"], env=env, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    summary = json.loads(out.stdout)
    assert summary["meters_billed"] == 4 and summary["bills"]["new"] == 4 and summary["blocks"] == 4
    assert _bills(db_conn) == local  # the same bills (meter, version, total) as the local run
    workers = db_conn.execute(
        "SELECT count(DISTINCT client_port) FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = 'amiflow-billing-worker'"
    ).fetchone()
    assert workers == (2,)  # each worker process keeps its own connection between blocks


def test_a_worker_killed_mid_block_loses_no_block_and_doubles_no_bill(
    db_url: str, db_conn: psycopg.Connection[Any], cluster: Cluster
) -> None:
    _fleet(db_conn, 6)
    result: list[RunResult | BaseException] = []

    def run() -> None:
        try:
            result.append(run_billing(db_url, _opts(dask=cluster.address)))
        except BaseException as exc:  # handed to the test thread
            result.append(exc)

    with db_conn.transaction():
        # every block's write waits here, inside its transaction: both workers are mid-block
        db_conn.execute("LOCK TABLE amiflow.bills IN EXCLUSIVE MODE")
        runner = threading.Thread(target=run)
        runner.start()
        deadline = time.monotonic() + 120
        waiting = 0
        while waiting < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
            with psycopg.connect(db_url, autocommit=True) as probe:
                row = probe.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND application_name = 'amiflow-billing-worker' AND wait_event_type = 'Lock'"
                ).fetchone()
            waiting = int(row[0]) if row else 0
        assert waiting == 2, "both workers should be blocked inside a block's transaction"
        cluster.workers[0].send_signal(signal.SIGKILL)
        cluster.workers[0].wait(10)
    runner.join(300)
    assert result and isinstance(result[0], RunResult), result
    summary = result[0].summary
    assert summary["meters_billed"] == 6 and summary["bills"]["new"] == 6
    blocks = db_conn.execute("SELECT count(*) FILTER (WHERE state = 'done'), count(*) FROM amiflow.bill_run_blocks")
    assert blocks.fetchone() == (6, 6)
    assert db_conn.execute("SELECT count(*), count(DISTINCT bill_id), max(version) FROM amiflow.bills").fetchone() == (
        6,
        6,
        1,
    )
    assert db_conn.execute("SELECT count(*), count(DISTINCT idempotency_key) FROM amiflow.outbox").fetchone() == (6, 6)
    assert db_conn.execute("SELECT status FROM amiflow.bill_runs").fetchone() == ("done",)
