"""The batch writer on a real server: exactly-once storage, conflicts kept, bad rows quarantined, large batches."""

from __future__ import annotations

import json
import threading
from typing import Any

import numpy as np
import psycopg
import pytest

from amiflow.db.writer import BatchWriter, WriteResult
from amiflow.types import QualityFlag, ReadingBatch, Source

T0 = 1_793_491_200  # 2026-11-01T00:00:00Z


def _register(conn: psycopg.Connection[Any], n: int, prefix: str = "M") -> list[str]:
    names = [f"{prefix}{i:05d}" for i in range(n)]
    with conn.cursor() as cur, cur.copy("COPY amiflow.meters (name, protocol) FROM STDIN") as copy:
        for name in names:
            copy.write_row((name, "mqtt"))
    return names


def _day(names: list[str], day: int = 0, seed: int = 1, obis: str = "1-0:1.29.0") -> ReadingBatch:
    ts = T0 + day * 86400 + 900 * np.arange(1, 97)
    rng = np.random.default_rng(seed)
    return ReadingBatch.from_columns(
        np.repeat(np.array(names, dtype=object), 96),
        obis,
        np.tile(ts, len(names)),
        rng.uniform(10, 500, 96 * len(names)),
        unit="Wh",
    )


def _count(conn: psycopg.Connection[Any], table: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM amiflow.{table}").fetchone()
    assert row is not None
    return int(row[0])


def test_insert_then_duplicates_then_conflicts(db_conn: psycopg.Connection[Any]) -> None:
    names = _register(db_conn, 20)
    writer = BatchWriter(db_conn)
    batch = _day(names)
    assert writer.write(batch) == WriteResult(inserted=1920)
    assert writer.write(batch) == WriteResult(duplicates=1920)
    changed = _day(names, seed=2)
    assert writer.write(changed) == WriteResult(conflicts=1920)
    assert _count(db_conn, "readings") == 1920
    assert _count(db_conn, "reading_conflicts") == 1920
    stored, new = db_conn.execute(
        "SELECT stored_value, new_value FROM amiflow.reading_conflicts ORDER BY meter_id, ts LIMIT 1"
    ).fetchone() or (None, None)
    assert stored == pytest.approx(batch.value[0]) and new == pytest.approx(changed.value[0])


def test_partly_overlapping_batch_inserts_only_the_new_rows(db_conn: psycopg.Connection[Any]) -> None:
    names = _register(db_conn, 10)
    writer = BatchWriter(db_conn)
    writer.write(_day(names[:5]))
    result = writer.write(_day(names))  # 5 meters already stored, 5 new
    assert result == WriteResult(inserted=480, duplicates=480)
    assert _count(db_conn, "readings") == 960


def test_duplicates_and_conflicts_inside_one_batch(db_conn: psycopg.Connection[Any]) -> None:
    _register(db_conn, 1)
    writer = BatchWriter(db_conn)
    batch = ReadingBatch.from_columns(
        ["M00000"] * 4, "1-0:1.29.0", [T0 + 900, T0 + 900, T0 + 900, T0 + 1800], [1.0, 1.0, 2.0, 3.0], unit="Wh"
    )
    assert writer.write(batch) == WriteResult(inserted=2, duplicates=1, conflicts=1)
    # the first arrival is kept; the later different value is a conflict, not silently dropped
    assert db_conn.execute("SELECT value FROM amiflow.readings ORDER BY ts LIMIT 1").fetchone() == (1.0,)
    assert db_conn.execute("SELECT stored_value, new_value FROM amiflow.reading_conflicts").fetchone() == (1.0, 2.0)


def test_unit_conversion_rounding_is_still_a_duplicate(db_conn: psycopg.Connection[Any]) -> None:
    _register(db_conn, 1)
    writer = BatchWriter(db_conn)
    writer.write(ReadingBatch.from_columns(["M00000"], "1-0:1.29.0", [T0 + 900], [231.0], unit="Wh"))
    again = ReadingBatch.from_columns(["M00000"], "1-0:1.29.0", [T0 + 900], [0.231 * 1000], unit="Wh")
    assert writer.write(again) == WriteResult(duplicates=1)


def test_unknown_meters_and_non_finite_values_are_quarantined_not_dropped(db_conn: psycopg.Connection[Any]) -> None:
    _register(db_conn, 1)
    writer = BatchWriter(db_conn, source_name="test")
    batch = ReadingBatch.from_columns(
        ["M00000", "GHOST", "GHOST", "M00000"],
        "1-0:1.29.0",
        [T0 + 900, T0 + 900, T0 + 1800, T0 + 1800],
        [1.0, 2.0, 3.0, float("nan")],
        unit="Wh",
    )
    assert writer.write(batch) == WriteResult(inserted=1, quarantined=3)
    rows = db_conn.execute("SELECT reason, meter, raw, source FROM amiflow.v_quarantine ORDER BY reason").fetchall()
    assert [(r[0], r[1], r[3]) for r in rows] == [("not_finite", "M00000", "test"), ("unknown_meter", "GHOST", "test")]
    ghost = json.loads(rows[1][2])
    assert ghost["meter"] == "GHOST" and [r["value"] for r in ghost["readings"]] == [2.0, 3.0]


def test_unknown_channels_are_created_with_their_kind(db_conn: psycopg.Connection[Any]) -> None:
    _register(db_conn, 1)
    writer = BatchWriter(db_conn)
    batch = ReadingBatch.from_columns(["M00000"], "1-0:3.7.0", [T0], [12.5], unit="var")
    assert writer.write(batch) == WriteResult(inserted=1, channels_created=1)
    assert db_conn.execute("SELECT unit, kind FROM amiflow.channels WHERE obis = '1-0:3.7.0'").fetchone() == (
        "var",
        "instantaneous",
    )
    bad = ReadingBatch.from_columns(["M00000"], "not-obis", [T0], [1.0], unit="W")
    assert writer.write(bad) == WriteResult(quarantined=1)


def test_quality_and_source_are_stored_and_shown_by_name(db_conn: psycopg.Connection[Any]) -> None:
    _register(db_conn, 1)
    batch = ReadingBatch.from_columns(
        ["M00000"],
        "1-0:1.29.0",
        [T0 + 900],
        [5.0],
        unit="Wh",
        quality=int(QualityFlag.ESTIMATED | QualityFlag.OUTAGE),
        source=Source.DLMS,
    )
    BatchWriter(db_conn).write(batch)
    row = db_conn.execute("SELECT meter, obis, value, unit, quality, source FROM amiflow.v_readings").fetchone()
    assert row == ("M00000", "1-0:1.29.0", 5.0, "Wh", ["estimated", "outage"], "dlms")


def test_concurrent_writers_store_overlapping_batches_exactly_once(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        names = _register(conn, 50)
    results: list[WriteResult] = []

    def work(seed: int) -> None:
        with psycopg.connect(db_url, autocommit=True) as conn:
            writer = BatchWriter(conn)
            for day in range(3):
                results.append(writer.write(_day(names, day=day, seed=day)))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = sum(results, WriteResult())
    assert total.inserted == 50 * 96 * 3
    assert total.duplicates == 2 * 50 * 96 * 3 and total.conflicts == 0
    with psycopg.connect(db_url) as conn:
        assert _count(conn, "readings") == 50 * 96 * 3


def test_a_million_row_batch(db_conn: psycopg.Connection[Any]) -> None:
    names = _register(db_conn, 10_417)  # 10,417 meters x 96 = 1,000,032 readings
    writer = BatchWriter(db_conn)
    batch = _day(names)
    assert writer.write(batch) == WriteResult(inserted=len(batch))
    half = batch.take(slice(0, len(batch) // 2))
    assert writer.write(half) == WriteResult(duplicates=len(half))
    assert _count(db_conn, "readings") == len(batch)


def test_old_data_gets_its_partition(db_conn: psycopg.Connection[Any]) -> None:
    _register(db_conn, 1)
    old = ReadingBatch.from_columns(["M00000"], "1-0:1.29.0", [1_577_836_800 + 900], [1.0], unit="Wh")  # 2020
    assert BatchWriter(db_conn).write(old) == WriteResult(inserted=1)
    backend = db_conn.execute("SELECT value FROM amiflow.storage_config WHERE key = 'backend'").fetchone()
    if backend == ("partitioned",):
        assert _count(db_conn, "readings_default") == 0


@pytest.mark.timescaledb
def test_hypertable_with_compression_and_continuous_aggregate(
    db_conn: psycopg.Connection[Any], timescaledb: None
) -> None:
    names = _register(db_conn, 3)
    BatchWriter(db_conn).write(_day(names))
    info = db_conn.execute(
        "SELECT compression_enabled FROM timescaledb_information.hypertables WHERE hypertable_name = 'readings'"
    ).fetchone()
    assert info == (True,)
    db_conn.execute("SELECT compress_chunk(c) FROM show_chunks('amiflow.readings') c")
    # a duplicate into a compressed chunk is still detected
    assert BatchWriter(db_conn).write(_day(names)) == WriteResult(duplicates=3 * 96)
    caggs = db_conn.execute(
        "SELECT view_name FROM timescaledb_information.continuous_aggregates WHERE view_schema = 'amiflow'"
    ).fetchall()
    assert caggs == [("energy_hourly",)]


def test_resent_older_rows_mixed_with_new_ones(db_conn: psycopg.Connection[Any]) -> None:
    names = _register(db_conn, 3)
    writer = BatchWriter(db_conn)
    writer.write(_day(names, day=0))
    old_half = _day(names, day=0).take(np.arange(3 * 96) % 96 < 48)
    mixed = ReadingBatch.concat([_day(names, day=1), old_half])
    assert writer.write(mixed) == WriteResult(inserted=3 * 96, duplicates=3 * 48)
    # a stored reading in the middle of a run: rows before it may clash, rows after it cannot
    one = ReadingBatch.from_columns(["M00000"], "1-0:1.29.0", [T0 + 5 * 86400 + 900 * 5], [7.0], unit="Wh")
    writer.write(one)
    run = ReadingBatch.from_columns(
        "M00000",
        "1-0:1.29.0",
        T0 + 5 * 86400 + 900 * np.arange(1, 11),
        [7.0 if i == 5 else 1.0 for i in range(1, 11)],
        unit="Wh",
    )
    assert writer.write(run) == WriteResult(inserted=9, duplicates=1)
    assert _count(db_conn, "readings") == 3 * 96 * 2 + 10
