"""Benchmark: the whole billing run from the database (read -> VEE -> rate -> write), meters per second.

  python benchmarks/billing_run.py [--quick] [--meters N] [--workers W]

Writes a month (March 2024, America/Los_Angeles, 2,972 quarter hours with the DST change) of 15-min import energy
for N meters (default 10,000; --quick 1,000) with BatchWriter, plus the opening and closing registers; 2 % of
meters lose 3 hours (interpolated + like-day estimates). Then it runs:

1. the billing run in ONE process (``--workers 0``): the baseline, with the time split by phase;
2. the same run on W local worker processes (default 2) after deleting the bills: the speed-up over 1;
3. a re-run of the finished month: every bill unchanged, nothing queued (the idempotency check's cost).

Ends with ``RESULT billing_run meters_per_s=N read_s=N vee_s=N rate_s=N write_s=N ...``; the phase times are of
run 1 (summed over its blocks), ``bottleneck`` names the largest. AMIFLOW_BENCH_DATABASE_URL picks the server.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from amiflow.db.writer import BatchWriter
from amiflow.types import ReadingBatch, Source
from benchmarks._db import scratch_database
from rating.billing_run import RunOptions, run_billing
from rating.tariff_files import load_tariff
from rating.tariff_store import store_tariff

TZ = "America/Los_Angeles"
PERIOD = date(2024, 3, 1)
TARIFF = Path(__file__).resolve().parents[1] / "rating" / "tariffs" / "residential_tou_tiers.toml"
CHUNK = 250  # meters per BatchWriter write


def _axis() -> np.ndarray:
    zone = ZoneInfo(TZ)
    lo = int(datetime(2024, 3, 1, tzinfo=zone).timestamp())
    hi = int(datetime(2024, 4, 1, tzinfo=zone).timestamp())
    return np.arange(lo + 900, hi + 1, 900, dtype=np.int64)


def seed(url: str, meters: int) -> float:
    """Register the meters and write their month; returns the seconds spent writing readings."""
    ts = _axis()
    t = len(ts)
    hour = ((ts - 900) // 3600 - 8) % 24
    shape = 60.0 + 90.0 * ((hour >= 17) & (hour < 22)) + 40.0 * ((hour >= 7) & (hour < 9))
    rng = np.random.default_rng(42)
    names = [f"B{k:06d}" for k in range(meters)]
    with psycopg.connect(url, autocommit=True) as conn:
        for spec in load_tariff(TARIFF):
            store_tariff(conn, spec)
        with (
            conn.cursor() as cur,
            cur.copy("COPY amiflow.meters (name, protocol, timezone, tariff, account) FROM STDIN") as cp,
        ):
            for n in names:
                cp.write_row((n, "mqtt", TZ, "res-tou-tiers", f"A{n[1:]}"))
        writer = BatchWriter(conn)
        started = time.perf_counter()
        for lo in range(0, meters, CHUNK):
            chunk = names[lo : lo + CHUNK]
            m = len(chunk)
            wh = np.round(shape[None, :] * rng.uniform(0.5, 1.5, (m, 1)) * rng.uniform(0.8, 1.2, (m, t)), 3)
            keep = np.ones((m, t), dtype=bool)
            lossy = rng.random(m) < 0.02
            keep[lossy, 1000:1012] = False
            meter_col = np.repeat(np.array(chunk, dtype=object), t)
            writer.write(
                ReadingBatch.from_columns(
                    meter_col[keep.ravel()], "1-0:1.29.0", np.tile(ts, m)[keep.ravel()], wh[keep], unit="Wh",
                    source=Source.MQTT,
                )
            )  # fmt: skip
            reg0 = rng.uniform(1e6, 5e7, m)
            writer.write(
                ReadingBatch.from_columns(
                    np.repeat(np.array(chunk, dtype=object), 2), "1-0:1.8.0", np.tile([ts[0] - 900, ts[-1]], m),
                    np.column_stack([reg0, reg0 + wh.sum(axis=1)]).ravel(), unit="Wh",
                )
            )  # fmt: skip
        conn.execute("ANALYZE")
        return time.perf_counter() - started


def _clear(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE amiflow.outbox, amiflow.bills, amiflow.bill_runs CASCADE")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 meters instead of 10,000")
    parser.add_argument("--meters", type=int, help="number of meters")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of run 2 (default 2)")
    parser.add_argument("--block", type=int, help="meters per block (default 2000, the setting's default; --quick 250)")
    args = parser.parse_args()
    meters = args.meters or (1_000 if args.quick else 10_000)
    args.block = args.block or (250 if args.quick else 2000)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    with scratch_database("amiflow_bench_bill") as url:
        write_s = seed(url, meters)
        readings = meters * len(_axis())
        print(f"seed: {meters} meters, {readings} readings written in {write_s:.1f} s", flush=True)
        base = RunOptions(period=PERIOD, block_meters=args.block, progress=False, workers=0)
        one = run_billing(url, base).summary
        assert one["meters_billed"] == meters, one
        sec = one["seconds"]
        phases = {k: sec[k] for k in ("read", "vee", "rate", "write")}
        rate1 = meters / sec["wall"]
        print(f"run 1 (1 process): {sec['wall']:.1f} s = {rate1:.0f} meters/s; "
              + ", ".join(f"{k} {v:.2f} s ({v / sum(phases.values()):.0%})" for k, v in phases.items()))  # fmt: skip
        _clear(url)
        two = run_billing(url, RunOptions(period=PERIOD, block_meters=args.block, progress=False,
                                          workers=args.workers)).summary  # fmt: skip
        rate2 = meters / two["seconds"]["wall"]
        print(f"run 2 ({args.workers} processes): {two['seconds']['wall']:.1f} s = {rate2:.0f} meters/s "
              f"({rate2 / rate1:.2f}x run 1)")  # fmt: skip
        three = run_billing(url, base).summary
        assert three["bills"]["unchanged"] == meters, three["bills"]
        rate3 = meters / three["seconds"]["wall"]
        print(f"run 3 (re-run, all {meters} bills unchanged): {three['seconds']['wall']:.1f} s = {rate3:.0f} meters/s")
    bottleneck = max(phases, key=lambda k: phases[k])
    print(
        f"RESULT billing_run meters_per_s={rate1:.0f} read_s={phases['read']:.2f} vee_s={phases['vee']:.2f} "
        f"rate_s={phases['rate']:.2f} write_s={phases['write']:.2f} bottleneck={bottleneck} meters={meters} "
        f"parallel_meters_per_s={rate2:.0f} parallel_ratio={rate2 / rate1:.2f} rerun_meters_per_s={rate3:.0f} "
        f"estimated_share={one['estimated_share']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
