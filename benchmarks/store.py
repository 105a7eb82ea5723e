"""Store benchmark: raw binary COPY vs the amiflow writer (dedup always on) vs the numpy reader, one database.

  python benchmarks/store.py [--quick] [--readings N]

Baselines, measured in the same run:

* ``copy``: binary COPY of the same batches, in the same arrival order, into a bare table with the same columns and
  the same unique key (meter, channel, ts) but no amiflow logic;
* ``sorted_copy`` (the fair one): binary COPY of the same rows, each batch sorted the way the writer sorts it
  (meter, channel, ts), into amiflow.readings itself (same partitions, same index, same triggers), then truncated.

The writer then stores the same stream into amiflow.readings (resolving meter names, sorting, dedup, the packed-day
guard, partitions), and again a stream in which every batch re-sends 5% of the previous batch (duplicates) and 0.1%
with changed values (conflicts). The reader reads it all back into meters x intervals matrices twice: from the rows
(``row_reader_values_per_s``), and after the days are packed (``pack_readings_per_s``, what ``amiflow db maintain``
does once a day) from the packs (``reader_values_per_s``, the billing read). On TimescaleDB the rows are also read
back from compressed chunks (``compressed_reader_values_per_s``) and packed from them. Ends with the RESULT line of
CONTRACT.md.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from amiflow.db.binary_copy import PG_EPOCH_S, encode_rows
from amiflow.db.packing import pack_days
from amiflow.db.reader import read_intervals
from amiflow.db.writer import FIELDS, BatchWriter, WriteResult
from amiflow.types import ReadingBatch
from benchmarks._db import scratch_database

T0 = 1_793_491_200  # 2026-11-01T00:00:00Z
BATCH_INTERVALS = 20


def stream(meters: int, intervals: int, *, dup_share: float = 0.0, seed: int = 7) -> Iterator[ReadingBatch]:
    """Batches in arrival order (time-major: every meter's reading of one interval, then the next)."""
    rng = np.random.default_rng(seed)
    names = np.array([f"B{i:06d}" for i in range(meters)], dtype=object)
    previous: ReadingBatch | None = None
    for start in range(0, intervals, BATCH_INTERVALS):
        k = min(BATCH_INTERVALS, intervals - start)
        ts = T0 + 900 * (start + 1 + np.repeat(np.arange(k), meters))
        values = rng.uniform(10.0, 900.0, k * meters).round(3)
        batch = ReadingBatch.from_columns(np.tile(names, k), "1-0:1.29.0", ts, values, unit="Wh")
        if dup_share and previous is not None:
            pick = rng.choice(len(previous), int(len(previous) * dup_share), replace=False)
            resent = previous.take(pick)
            changed = rng.random(len(pick)) < 0.02  # 2% of the re-sent rows carry a different value: conflicts
            value = resent.value.copy()
            value[changed] += 1.0
            resent = ReadingBatch(
                resent.meter, resent.obis, resent.ts, value, resent.quality, resent.source, resent.unit
            )
            out = ReadingBatch.concat([batch, resent])
        else:
            out = batch
        previous = batch
        yield out


def register(conn: psycopg.Connection, meters: int) -> dict[str, int]:
    with conn.cursor() as cur, cur.copy("COPY amiflow.meters (name, protocol) FROM STDIN") as copy:
        for i in range(meters):
            copy.write_row((f"B{i:06d}", "mqtt"))
    return dict(conn.execute("SELECT name, id FROM amiflow.meters").fetchall())


def raw_copy(conn: psycopg.Connection, batches: list[ReadingBatch], ids: dict[str, int]) -> float:
    conn.execute(
        "CREATE TABLE bench_raw (meter_id int4 NOT NULL, channel_id int2 NOT NULL, ts timestamptz NOT NULL,"
        " value float8 NOT NULL, quality int4 NOT NULL, source int2 NOT NULL)"
    )
    conn.execute("CREATE UNIQUE INDEX ON bench_raw (meter_id, channel_id, ts)")
    # pre-resolved ids: the baseline does no work but the COPY itself
    prepared = [
        {
            "meter_id": np.fromiter((ids[m] for m in b.meter), np.int32, len(b)),
            "channel_id": np.ones(len(b), np.int16),
            "ts": (b.ts - PG_EPOCH_S) * 1_000_000,
            "value": b.value,
            "quality": b.quality,
            "source": b.source,
        }
        for b in batches
    ]
    t = time.perf_counter()
    for cols in prepared:
        with (
            conn.transaction(),
            conn.cursor() as cur,
            cur.copy(
                "COPY bench_raw (meter_id, channel_id, ts, value, quality, source) FROM STDIN (FORMAT BINARY)"
            ) as copy,
        ):
            for block in encode_rows(FIELDS, cols):
                copy.write(block)
    elapsed = time.perf_counter() - t
    conn.execute("DROP TABLE bench_raw")
    return elapsed


def sorted_copy(conn: psycopg.Connection, batches: list[ReadingBatch], ids: dict[str, int]) -> float:
    """The writer's own work minus amiflow's logic: each batch's rows sorted by (meter, channel, ts) as the writer
    sorts them, binary COPY into amiflow.readings (its partitions made beforehand, as the writer's cache would)."""
    prepared = []
    for b in batches:
        mid = np.fromiter((ids[m] for m in b.meter), np.int32, len(b))
        order = np.lexsort((b.ts, mid))
        prepared.append({"meter_id": mid[order], "channel_id": np.ones(len(b), np.int16),
                         "ts": (b.ts[order] - PG_EPOCH_S) * 1_000_000, "value": b.value[order],
                         "quality": b.quality[order], "source": b.source[order]})  # fmt: skip
    lo = min(int(b.ts.min()) for b in batches)
    hi = max(int(b.ts.max()) for b in batches)
    conn.execute("SELECT amiflow.ensure_partitions(to_timestamp(%s), to_timestamp(%s))", (lo, hi))
    t = time.perf_counter()
    for cols in prepared:
        with (
            conn.transaction(),
            conn.cursor() as cur,
            cur.copy(
                "COPY amiflow.readings (meter_id, channel_id, ts, value, quality, source) FROM STDIN (FORMAT BINARY)"
            ) as copy,
        ):
            for block in encode_rows(FIELDS, cols):
                copy.write(block)
    elapsed = time.perf_counter() - t
    conn.execute("TRUNCATE amiflow.readings")
    return elapsed


def read_all(conn: psycopg.Connection, meters: int, intervals: int) -> tuple[float, int]:
    names = [f"B{i:06d}" for i in range(meters)]
    lo, hi = datetime.fromtimestamp(T0, UTC), datetime.fromtimestamp(T0 + 900 * intervals, UTC)
    t = time.perf_counter()
    got = 0
    for block in range(0, meters, 2000):
        m = read_intervals(conn, names[block : block + 2000], "1-0:1.29.0", lo, hi)
        got += int(m.present.sum())
    return time.perf_counter() - t, got


def write_all(conn: psycopg.Connection, batches: list[ReadingBatch]) -> tuple[float, WriteResult]:
    writer = BatchWriter(conn)
    total = WriteResult()
    t = time.perf_counter()
    for b in batches:
        total = total + writer.write(b)
    return time.perf_counter() - t, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500k readings instead of 5M")
    parser.add_argument("--readings", type=int, help="total readings (default 5,000,000; --quick 500,000)")
    args = parser.parse_args()
    total = args.readings or (500_000 if args.quick else 5_000_000)
    meters = 10_000 if total >= 1_000_000 else 2_500
    intervals = max(BATCH_INTERVALS, total // meters)
    n = meters * intervals
    print(
        f"store benchmark: {meters} meters x {intervals} intervals = {n:,} readings, batches of "
        f"{meters * BATCH_INTERVALS:,}"
    )
    with scratch_database() as url, psycopg.connect(url, autocommit=True) as conn:
        ids = register(conn, meters)
        clean = list(stream(meters, intervals))
        copy_s = raw_copy(conn, clean, ids)
        conn.execute("CHECKPOINT")
        gc.collect()
        sorted_s = sorted_copy(conn, clean, ids)
        conn.execute("CHECKPOINT")
        gc.collect()
        write_s, res = write_all(conn, clean)
        assert res.inserted == n, res
        del clean
        row_read_s, got = read_all(conn, meters, intervals)
        assert got == n, (got, n)
        compressed_rate = None
        backend = conn.execute("SELECT value FROM amiflow.storage_config WHERE key = 'backend'").fetchone()
        if backend == ("timescaledb",):
            conn.execute("SELECT compress_chunk(c, if_not_compressed => true) FROM show_chunks('amiflow.readings') c")
            comp_s, got = read_all(conn, meters, intervals)
            assert got == n, (got, n)
            compressed_rate = n / comp_s
        last_day = datetime.fromtimestamp(T0 + 900 * intervals - 1, UTC).date()
        packed = pack_days(conn, since=datetime.fromtimestamp(T0, UTC).date(), until=last_day,
                           now=datetime.fromtimestamp(T0, UTC) + timedelta(days=400))  # fmt: skip
        assert packed.readings == n, packed
        read_s, got = read_all(conn, meters, intervals)
        assert got == n, (got, n)
        conn.execute("TRUNCATE amiflow.readings")
        conn.execute("CHECKPOINT")
        dup_batches = list(stream(meters, intervals, dup_share=0.05, seed=8))
        offered = sum(len(b) for b in dup_batches)
        gc.collect()
        dup_s, dup_res = write_all(conn, dup_batches)
        assert dup_res.inserted == n and dup_res.inserted + dup_res.duplicates + dup_res.conflicts == offered
    copy_rate, sorted_rate, write_rate, dup_rate = n / copy_s, n / sorted_s, n / write_s, offered / dup_s
    read_rate, row_read_rate, pack_rate = n / read_s, n / row_read_s, n / packed.seconds
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"raw binary COPY (bare keyed table):  {copy_rate:12,.0f} rows/s")
    print(f"sorted binary COPY into readings:    {sorted_rate:12,.0f} rows/s  (the writer's own sort, table, index)")
    print(f"amiflow writer, clean stream:        {write_rate:12,.0f} rows/s  ({write_rate / copy_rate:.2f}x COPY, "
          f"{write_rate / sorted_rate:.2f}x sorted COPY)")  # fmt: skip
    print(
        f"amiflow writer, 5% dups per batch:   {dup_rate:12,.0f} rows/s  ({dup_rate / copy_rate:.2f}x COPY; "
        f"{dup_res.duplicates:,} duplicates, {dup_res.conflicts:,} conflicts)"
    )
    print(f"reader from rows into numpy:         {row_read_rate:12,.0f} values/s")
    if compressed_rate is not None:
        print(f"reader from compressed chunks:       {compressed_rate:12,.0f} values/s  (TimescaleDB)")
    print(f"packing days (amiflow db maintain):  {pack_rate:12,.0f} readings/s ({packed.packs:,} packs)")
    print(f"reader from packed days into numpy:  {read_rate:12,.0f} values/s  ({read_rate / row_read_rate:.1f}x rows)")
    print(f"peak RSS {rss_mb:.0f} MiB (the stream is held in memory by the benchmark itself)")
    print(
        f"RESULT store copy_rows_per_s={copy_rate:.0f} sorted_copy_rows_per_s={sorted_rate:.0f} "
        f"writer_rows_per_s={write_rate:.0f} writer_vs_copy={write_rate / copy_rate:.3f} "
        f"writer_vs_sorted_copy={write_rate / sorted_rate:.3f} dup_writer_vs_copy={dup_rate / copy_rate:.3f} "
        f"reader_values_per_s={read_rate:.0f} row_reader_values_per_s={row_read_rate:.0f} "
        f"pack_readings_per_s={pack_rate:.0f}"
        + (f" compressed_reader_values_per_s={compressed_rate:.0f}" if compressed_rate is not None else "")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
