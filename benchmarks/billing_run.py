"""Benchmark: the whole billing run from the database (read -> VEE -> rate -> write), meters per second.

  python benchmarks/billing_run.py [--quick] [--meters N] [--workers W] [--dask tcp://HOST:PORT] [--no-pack]
                                   [--compress]

Writes a month (March 2024, America/Los_Angeles, 2,972 quarter hours with the DST change) of 15-min import energy
for N meters (default 10,000; --quick 1,000) with BatchWriter, plus the opening and closing registers; 2 % of
meters lose 3 hours (interpolated + like-day estimates). Packs the days as the nightly ``amiflow db maintain`` does
(timed on its own, ``pack_s``; ``--no-pack`` leaves the run to read rows). On TimescaleDB, ``--compress`` first
compresses every chunk (``compress_s``; the month is older than ``compress_after``), so the packs are made from, and
the row reads of run 5 come from, compressed chunks. Then it runs:

1. the billing run in ONE process (``--workers 0``): the baseline ``meters_per_s``, with the time split by phase
   (summed over blocks: in one process the read of the next block and the write of the previous one overlap the
   rating of this one, so the phases add up to more than the wall time);
2. the same run on W local worker processes (default 2) after deleting the bills: the speed-up over 1;
3. a re-run of the finished month: every bill unchanged, nothing queued (the idempotency check's cost);
4. with ``--dask ADDRESS``: the run on that existing Dask cluster (``dask scheduler`` + ``dask worker``s that can
   reach the same database URL) after deleting the bills: ``dask_meters_per_s``;
5. unless ``--no-pack``: the packs dropped and the one-process run again, reading the rows as before packing
   existed (``rows_meters_per_s``): the in-run baseline of the packed read.

Runs 2, 4 and 5 must write the same bills as run 1 (content hash per bill id: checked). Ends with ``RESULT billing_run
meters_per_s=N read_s=N vee_s=N rate_s=N write_s=N ...``; ``bottleneck`` names the largest phase of run 1.
AMIFLOW_BENCH_DATABASE_URL picks the server (the Dask workers must reach the scratch database on it).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from amiflow.db.packing import pack_days
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


def _clear(url: str) -> dict[str, str]:
    """Delete the bills (and runs, outbox rows); returns {bill_id: content_hash} of what was deleted."""
    with psycopg.connect(url, autocommit=True) as conn:
        bills = dict(conn.execute("SELECT bill_id, content_hash FROM amiflow.bills").fetchall())
        conn.execute("TRUNCATE amiflow.outbox, amiflow.bills, amiflow.bill_runs CASCADE")
    return bills


def _pack(url: str) -> tuple[float, int]:
    """Pack March (and the history days) as the nightly maintenance would; (seconds, readings packed)."""
    with psycopg.connect(url, autocommit=True) as conn:
        done = pack_days(conn, since=date(2024, 2, 1), until=date(2024, 4, 1), now=datetime(2024, 4, 2, 12, tzinfo=UTC))
        conn.execute("VACUUM ANALYZE amiflow.packed_days")
    return done.seconds, done.readings


def _compress(url: str) -> tuple[float, int]:
    """Compress every chunk of amiflow.readings (TimescaleDB); (seconds, chunks compressed)."""
    with psycopg.connect(url, autocommit=True) as conn:
        backend = conn.execute("SELECT value FROM amiflow.storage_config WHERE key = 'backend'").fetchone()
        if backend != ("timescaledb",):
            raise SystemExit("--compress needs TimescaleDB (this database uses plain partitions)")
        started = time.perf_counter()
        chunks = "SELECT compress_chunk(c, if_not_compressed => true) FROM show_chunks('amiflow.readings') c"
        n = len(conn.execute(chunks).fetchall())
        conn.execute("ANALYZE amiflow.readings")
        return time.perf_counter() - started, n


def _same_bills(url: str, expected: dict[str, str], what: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        got = dict(conn.execute("SELECT bill_id, content_hash FROM amiflow.bills").fetchall())
    assert got == expected, f"{what}: {len(set(got.items()) ^ set(expected.items()))} bills differ from run 1"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 meters instead of 10,000")
    parser.add_argument("--meters", type=int, help="number of meters")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of run 2 (default 2)")
    parser.add_argument("--dask", metavar="ADDRESS", help="also run on this existing Dask cluster (dask_meters_per_s)")
    parser.add_argument("--no-pack", action="store_true", help="do not pack the days: the run reads rows")
    parser.add_argument("--compress", action="store_true", help="TimescaleDB: compress every chunk before the runs")
    parser.add_argument("--block", type=int, help="meters per block (default 2000, the setting's default; --quick 250)")
    args = parser.parse_args()
    meters = args.meters or (1_000 if args.quick else 10_000)
    args.block = args.block or (250 if args.quick else 2000)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    dask_rate: float | None = None
    with scratch_database("amiflow_bench_bill") as url:
        write_s = seed(url, meters)
        readings = meters * len(_axis())
        print(f"seed: {meters} meters, {readings} readings written in {write_s:.1f} s", flush=True)
        compress_s = 0.0
        if args.compress:
            compress_s, chunks = _compress(url)
            print(f"compress: {chunks} chunks compressed in {compress_s:.1f} s")
        pack_s, packed = (0.0, 0) if args.no_pack else _pack(url)
        if not args.no_pack:
            print(f"pack: {packed} readings into packed days in {pack_s:.1f} s ({packed / pack_s:,.0f} readings/s)")
        base = RunOptions(period=PERIOD, block_meters=args.block, progress=False, workers=0)
        one = run_billing(url, base).summary
        assert one["meters_billed"] == meters, one
        sec = one["seconds"]
        phases = {k: sec[k] for k in ("read", "vee", "rate", "write")}
        rate1 = meters / sec["wall"]
        print(f"run 1 (1 process): {sec['wall']:.1f} s = {rate1:.0f} meters/s; phases summed over blocks "
              + ", ".join(f"{k} {v:.2f} s ({v / sum(phases.values()):.0%})" for k, v in phases.items())
              + f" = {sum(phases.values()):.1f} s in {sec['wall']:.1f} s of wall (overlapped)")  # fmt: skip
        bills1 = _clear(url)
        two = run_billing(url, RunOptions(period=PERIOD, block_meters=args.block, progress=False,
                                          workers=args.workers)).summary  # fmt: skip
        _same_bills(url, bills1, "run 2")
        rate2 = meters / two["seconds"]["wall"]
        print(f"run 2 ({args.workers} processes): {two['seconds']['wall']:.1f} s = {rate2:.0f} meters/s "
              f"({rate2 / rate1:.2f}x run 1), same bills")  # fmt: skip
        three = run_billing(url, base).summary
        assert three["bills"]["unchanged"] == meters, three["bills"]
        rate3 = meters / three["seconds"]["wall"]
        print(f"run 3 (re-run, all {meters} bills unchanged): {three['seconds']['wall']:.1f} s = {rate3:.0f} meters/s")
        if args.dask:
            _clear(url)
            four = run_billing(url, RunOptions(period=PERIOD, block_meters=args.block, progress=False,
                                               dask=args.dask)).summary  # fmt: skip
            _same_bills(url, bills1, "the Dask run")
            dask_rate = meters / four["seconds"]["wall"]
            print(f"run 4 (Dask cluster {args.dask}): {four['seconds']['wall']:.1f} s = {dask_rate:.0f} meters/s "
                  f"({dask_rate / rate1:.2f}x run 1), same bills")  # fmt: skip
        rows_rate: float | None = None
        if not args.no_pack:
            _clear(url)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("TRUNCATE amiflow.packed_days, amiflow.pack_log, amiflow.pack_dirty")
            five = run_billing(url, base).summary
            _same_bills(url, bills1, "the run from rows")
            rows_rate = meters / five["seconds"]["wall"]
            print(f"run 5 (1 process, packs dropped: reads rows): {five['seconds']['wall']:.1f} s = {rows_rate:.0f} "
                  f"meters/s, read {five['seconds']['read']:.2f} s; packed run 1 is {rate1 / rows_rate:.2f}x, "
                  "same bills")  # fmt: skip
    bottleneck = max(phases, key=lambda k: phases[k])
    rows_part = f" rows_meters_per_s={rows_rate:.0f} packed_vs_rows={rate1 / rows_rate:.2f}" if rows_rate else ""
    dask_part = f" dask_meters_per_s={dask_rate:.0f} dask_ratio={dask_rate / rate1:.2f}" if dask_rate else ""
    print(
        f"RESULT billing_run meters_per_s={rate1:.0f} read_s={phases['read']:.2f} vee_s={phases['vee']:.2f} "
        f"rate_s={phases['rate']:.2f} write_s={phases['write']:.2f} wall_s={sec['wall']:.2f} bottleneck={bottleneck} "
        f"meters={meters} packed={int(not args.no_pack)} pack_s={pack_s:.2f} compressed={int(args.compress)} "
        f"compress_s={compress_s:.2f} "
        f"parallel_meters_per_s={rate2:.0f} parallel_ratio={rate2 / rate1:.2f} rerun_meters_per_s={rate3:.0f} "
        f"estimated_share={one['estimated_share']}{rows_part}{dask_part}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
