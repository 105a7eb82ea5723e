"""The writer skips its stored-rows probe after clean batches and COPYs optimistically; a batch that re-sends stored
rows then is refused by the unique key, probed and split, with the same counts as if it had been probed first."""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg

from amiflow.db.writer import BatchWriter, WriteResult
from amiflow.types import ReadingBatch

T0 = 1_793_491_200  # 2026-11-01T00:00:00Z


def _batch(first: int, n: int, value: float = 1.0, meters: int = 3) -> ReadingBatch:
    ts = T0 + 900 * (first + 1 + np.arange(n))
    names = np.repeat(np.array([f"P{k}" for k in range(meters)], dtype=object), n)
    return ReadingBatch.from_columns(names, "1-0:1.29.0", np.tile(ts, meters), np.full(n * meters, value), unit="Wh")


def test_an_unprobed_batch_with_resent_rows_is_split_exactly(db_conn: psycopg.Connection[Any]) -> None:
    for k in range(3):
        db_conn.execute("INSERT INTO amiflow.meters (name, protocol) VALUES (%s, 'mqtt')", (f"P{k}",))
    writer = BatchWriter(db_conn)
    assert writer.write(_batch(0, 10)) == WriteResult(inserted=30)  # probed: nothing stored yet
    assert writer.write(_batch(10, 10)) == WriteResult(inserted=30)  # the probe is skipped now
    resent = ReadingBatch.concat([_batch(15, 10), _batch(19, 1, value=2.0, meters=1)])  # 5 new + 5 re-sent per meter
    got = writer.write(resent)  # unprobed: the COPY hits the key, then the batch is probed and split
    assert got == WriteResult(inserted=15, duplicates=15, conflicts=1)
    assert writer.write(_batch(25, 5)) == WriteResult(inserted=15)
    assert writer.write(_batch(20, 10)) == WriteResult(duplicates=30)  # probed again after the miss
    stored = db_conn.execute("SELECT count(*), count(DISTINCT (meter_id, ts)) FROM amiflow.readings").fetchone()
    assert stored == (3 * 30, 3 * 30)
    assert db_conn.execute("SELECT count(*) FROM amiflow.reading_conflicts").fetchone() == (1,)
