"""Poll benchmark: meters polled per minute through one poller against N simulated TCP meters (DLMS and Modbus),
and DLMS codec throughput, each against a baseline measured in the same run.

  python benchmarks/poll.py [--quick] [--meters N]

The simulators run in a child process (N DLMS meters on the TCP wrapper, N Modbus SDM630 meters on Modbus TCP); the
poller in this process polls all of them into a scratch database: first one meter at a time (the baseline: what a
naive sequential head-end achieves), then with the poller's concurrency (one request per meter at a time, many meters
at once). A poll is a full read: association, clock, registers and the profile since the last poll (DLMS), or the
mapped registers (Modbus). Codec: load-profile rows decoded per second by amiflow's DLMS decoder vs a straightforward
one (benchmarks/dlms_codec.py). Ends with ``RESULT poll ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import dlms_codec
from benchmarks._db import scratch_database
from ingest.poll_store import PollStore
from ingest.poller import Poller, PollerConfig

CHILD = r"""
import asyncio, json, sys, time
from datetime import UTC, datetime
from simulators.dlms import DlmsSimulator
from simulators.modbus import ModbusSimulator
n = int(sys.argv[1])
async def main():
    start = datetime.fromtimestamp(time.time() - 86400, UTC)
    sims = [DlmsSimulator(meter_index=i, start=start) for i in range(n)]
    sims += [ModbusSimulator(meter_index=i) for i in range(n)]
    for s in sims:
        await s.start()
    print(json.dumps([s.uri for s in sims]), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for s in sims:
        await s.stop()
asyncio.run(main())
"""


def poll_rate(url: str, *, concurrency: int, rounds: int) -> tuple[float, int]:
    """Meters polled per minute over ``rounds`` full passes; returns (rate, failures)."""
    with psycopg.connect(url, autocommit=True) as conn:
        poller = Poller(PollStore(conn), PollerConfig(concurrency=concurrency, timeout_s=5.0, retries=0))

        async def passes() -> tuple[int, int, float]:
            polled = failed = 0
            t = time.perf_counter()
            for _ in range(rounds):
                summary = await poller.poll_all()
                polled += summary.polled
                failed += summary.failed
            return polled, failed, time.perf_counter() - t

        polled, failed, elapsed = asyncio.run(passes())
    return polled / elapsed * 60, failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--meters", type=int, help="meters of each protocol (default 100; --quick 20)")
    args = parser.parse_args()
    n = args.meters or (20 if args.quick else 100)
    rounds = 2 if args.quick else 3
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(n)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        assert child.stdout is not None
        uris = json.loads(child.stdout.readline())
        with scratch_database() as url:
            with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
                for i, uri in enumerate(uris):
                    protocol = "dlms" if uri.startswith("dlms") else "modbus"
                    cur.execute(
                        "INSERT INTO amiflow.meters (name, protocol, uri) VALUES (%s, %s, %s)",
                        (f"P{i:04d}", protocol, uri),
                    )
            poll_rate(url, concurrency=64, rounds=1)  # first polls backfill the day of profile: not timed
            sequential, failed_seq = poll_rate(url, concurrency=1, rounds=1)
            concurrent, failed_con = poll_rate(url, concurrency=64, rounds=rounds)
    finally:
        if child.stdin:
            child.stdin.close()
        child.wait(30)
    rows = 31 * 96 if args.quick else 365 * 96
    raw = dlms_codec.make_buffer(rows, compress=False)
    ours = dlms_codec.rate(dlms_codec.amiflow, raw, rows, 1.0)
    base = dlms_codec.rate(dlms_codec.baseline, raw, rows, 1.0)
    print(f"{2 * n} meters ({n} DLMS TCP wrapper, {n} Modbus TCP), simulators in a child process")
    print(f"sequential poller (baseline): {sequential:10,.0f} meters/min  ({failed_seq} failed)")
    print(
        f"concurrent poller:            {concurrent:10,.0f} meters/min  ({failed_con} failed; "
        f"{concurrent / sequential:.1f}x)"
    )
    print(f"DLMS profile decoding: {ours:,.0f} rows/s vs {base:,.0f} rows/s baseline ({ours / base:.1f}x)")
    print(
        f"RESULT poll meters={2 * n} meters_per_min={concurrent:.0f} sequential_meters_per_min={sequential:.0f} "
        f"ratio={concurrent / sequential:.2f} failed={failed_seq + failed_con} dlms_rows_per_s={ours:.0f} "
        f"dlms_baseline_rows_per_s={base:.0f} dlms_ratio={ours / base:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
