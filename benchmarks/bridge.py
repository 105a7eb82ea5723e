"""Benchmark: ``amiflow bridge run`` draining the outbox into the local billing receiver.

Fills a fresh database's outbox with N bills and notices (100,000; ``--quick``: 10,000) over N/10 accounts, starts the
billing receiver (``billing_bridge.receiver``) in its own process, measures the receiver's own maximum rate with a
plain concurrent httpx load (no database, same client library and concurrency: the baseline), then runs the real
``amiflow bridge run`` command in a child process and times the drain. Checks that every row was delivered and the
receiver holds every key exactly once. Prints::

    RESULT bridge deliveries_per_s=N receiver_max_per_s=N ratio=R

The database is AMIFLOW_BENCH_DATABASE_URL / AMIFLOW_TEST_DATABASE_URL (a role that may create databases) or the
local server at postgresql://postgres@127.0.0.1:5432/postgres; a temporary database is created and dropped.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg

from amiflow.db.migrate import migrate
from billing_bridge.receiver_load import measure_max_rate, spawn_receiver

SECRET = b"bench-secret"


def _bill(i: int, account: str) -> dict[str, Any]:
    return {
        "bill_id": f"B{i:08d}",
        "version": 1,
        "account": account,
        "meters": [f"M{i:08d}"],
        "period": {
            "start": "2026-10-01",
            "end": "2026-10-31",
            "start_utc": "2026-10-01T04:00:00Z",
            "end_utc": "2026-11-01T04:00:00Z",
        },
        "tariff": {"id": "res-tou", "version": 3},
        "determinants": {"kwh": {"peak": 123.456, "offpeak": 310.5}, "peak_kw": {"peak": 5.2}, "days": 31},
        "lines": [
            {
                "code": "energy_peak",
                "description": "Energy, peak",
                "quantity": "123.456",
                "unit": "kWh",
                "rate": "0.31",
                "amount": "38.27",
            },
            {
                "code": "fixed",
                "description": "Customer charge",
                "quantity": "1",
                "unit": "month",
                "rate": "12.00",
                "amount": "12.00",
            },
        ],
        "total": "50.27",
        "currency": "USD",
        "estimated_share": 0.0,
        "vee": {"estimated": 0, "validated": 2976},
    }


def fill(url: str, n: int) -> None:
    accounts = max(1, n // 10)
    buf = io.StringIO()
    for i in range(n):
        account = f"A{i % accounts:07d}"
        kind = "bill" if i % 5 else "payment_reminder"
        payload = _bill(i, account) if kind == "bill" else {"type": kind, "account": account, "notice_id": f"N{i}"}
        text = json.dumps(payload).replace("\\", "\\\\")
        buf.write(f"{kind}\tbench-{i}\t{account}\t{text}\n")
    sql = "COPY amiflow.outbox (kind, idempotency_key, account, payload) FROM STDIN"
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur, cur.copy(sql) as copy:
        copy.write(buf.getvalue())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 rows (under a minute)")
    parser.add_argument("--rows", type=int)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    n = args.rows or (10_000 if args.quick else 100_000)
    server = (
        os.environ.get("AMIFLOW_BENCH_DATABASE_URL")
        or os.environ.get("AMIFLOW_TEST_DATABASE_URL")
        or "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    name = f"amiflow_bench_bridge_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
    proc, receiver_url = spawn_receiver(SECRET)
    try:
        migrate(url)
        t0 = time.perf_counter()
        fill(url, n)
        print(f"filled {n} outbox rows in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        baseline = measure_max_rate(receiver_url, SECRET, min(n, 20_000), args.concurrency)
        print(f"receiver max rate (plain httpx load): {baseline:.0f}/s", file=sys.stderr)
        env = {
            **os.environ,
            "AMIFLOW_DATABASE_URL": url,
            "AMIFLOW_BILLING_URL": receiver_url,
            "AMIFLOW_BILLING_SECRET": SECRET.decode(),
        }
        cmd = [
            sys.executable,
            "-m",
            "amiflow_app",
            "bridge",
            "run",
            "--concurrency",
            str(args.concurrency),
            "--batch",
            str(args.batch),
        ]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - t0
        print(done.stdout.strip(), done.stderr.strip()[-2000:], sep="\n", file=sys.stderr)
        with psycopg.connect(url) as conn:
            delivered = conn.execute("SELECT count(*) FROM amiflow.outbox WHERE state = 'delivered'").fetchone()
        stats = httpx.get(receiver_url + "/_stats").json()
        ok = done.returncode == 0 and delivered == (n,) and stats["keys"] >= n and stats["conflicts"] == 0
        if not ok:
            print(f"FAILED: exit {done.returncode}, delivered {delivered}, receiver {stats}", file=sys.stderr)
            return 1
        rate = n / elapsed
        print(
            f"RESULT bridge rows={n} deliveries_per_s={rate:.0f} receiver_max_per_s={baseline:.0f}"
            f" ratio={rate / baseline:.2f}"
        )
        return 0
    finally:
        proc.terminate()
        proc.wait(10)
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    raise SystemExit(main())
