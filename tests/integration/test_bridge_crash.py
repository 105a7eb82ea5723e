"""`amiflow bridge run` as real processes: kill -9 mid-run loses nothing; two dispatchers never send an item twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import psycopg

from amiflow.db.outbox import enqueue
from billing_bridge.delivery import canonical_body
from billing_bridge.receiver import Receiver, ReceiverConfig

SECRET = b"crash-secret"


def fill(url: str, n: int, accounts: int) -> dict[str, dict[str, Any]]:
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            for i in range(n):
                account = f"C{i % accounts:04d}"
                payload = {"bill_id": f"B{i}", "account": account, "total": f"{i}.50"}
                enqueue(conn, kind="bill", idempotency_key=f"crash-{i}", payload=payload, account=account)
        return dict(conn.execute("SELECT idempotency_key, payload FROM amiflow.outbox").fetchall())


def bridge(url: str, receiver: Receiver, *args: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "AMIFLOW_DATABASE_URL": url,
        "AMIFLOW_BILLING_URL": receiver.url,
        "AMIFLOW_BILLING_SECRET": SECRET.decode(),
        "AMIFLOW_BRIDGE_RETRY_BASE_S": "0.05",
        "AMIFLOW_BRIDGE_RETRY_MAX_S": "0.5",
    }
    cmd = [sys.executable, "-m", "amiflow_app", "bridge", "run", "--lease", "3", "--timeout", "0.8", *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def states(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT state, count(*) FROM amiflow.outbox GROUP BY state").fetchall())


def test_kill_9_mid_run_loses_nothing_and_a_restart_completes(db_url: str) -> None:
    payloads = fill(db_url, 1500, accounts=500)
    config = ReceiverConfig(SECRET, seed=11, fail_rate=0.1, delay_max_s=0.03)
    with Receiver(config) as receiver:
        proc = bridge(db_url, receiver, "--concurrency", "8", "--batch", "40")
        deadline = time.monotonic() + 60
        while len(receiver.snapshot().deliveries) < 300 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        during = states(db_url)
        assert 0 < during.get("delivered", 0) < 1500 and during.get("pending", 0) > 0
        with psycopg.connect(db_url) as conn:
            leased = conn.execute(
                "SELECT count(*) FROM amiflow.outbox WHERE state = 'pending' AND lease_until > now()"
            ).fetchone()
        assert leased is not None and leased[0] > 0, "the kill should leave claimed (leased) items behind"

        restart = bridge(db_url, receiver, "--concurrency", "8", "--batch", "40")
        try:
            _, err = restart.communicate(timeout=120)
        finally:
            if restart.poll() is None:
                restart.kill()
                restart.wait()
        assert restart.returncode == 0, err
        snap = receiver.snapshot()
    assert states(db_url) == {"delivered": 1500}
    assert set(snap.deliveries) == set(payloads)
    # duplicates at billing (sent before the kill, not yet recorded) carry identical bodies: no conflicts
    assert snap.conflicts == [] and snap.overlaps == [] and snap.bad_signatures == 0
    for key, payload in payloads.items():
        assert snap.deliveries[key].body == canonical_body(payload)


def test_two_dispatcher_processes_never_send_one_item_twice(db_url: str) -> None:
    payloads = fill(db_url, 800, accounts=800)
    # 503s are retried, nothing is stored twice by the receiver's own faults: every stored count must be exactly 1
    config = ReceiverConfig(SECRET, seed=5, fail_rate=0.2, delay_max_s=0.1)  # a run of ~3 s: both get work
    with Receiver(config) as receiver:
        procs = [bridge(db_url, receiver, "--concurrency", "16", "--batch", "25") for _ in range(2)]
        try:
            outputs = [p.communicate(timeout=120) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        snap = receiver.snapshot()
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outputs]
    delivered = [int(o[0].split("delivered ", 1)[1].split(",", 1)[0]) for o in outputs]
    assert all(d > 0 for d in delivered), f"both dispatchers should have worked: {delivered}"
    assert sum(delivered) == 800
    assert states(db_url) == {"delivered": 800}
    assert set(snap.deliveries) == set(payloads)
    assert snap.overlaps == [] and snap.conflicts == []
    assert sorted({d.count for d in snap.deliveries.values()}) == [1]
    assert snap.statuses.get(200) == 800 and snap.statuses.get(503, 0) > 50
