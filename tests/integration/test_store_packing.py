"""Packed days on a real server: the reader gives the same matrix from packs as from rows, and a pack never
disagrees with amiflow.readings (late writes, corrections, truncation, a writer racing the packer, no privilege)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import psycopg

from amiflow.db.packing import pack_days
from amiflow.db.reader import IntervalMatrix, read_intervals
from amiflow.db.writer import BatchWriter
from amiflow.types import QualityFlag, ReadingBatch

DAY0 = datetime(2026, 3, 27, tzinfo=UTC)  # the Berlin DST change (2026-03-29) lies inside the packed days
NOW = datetime(2026, 4, 20, tzinfo=UTC)
IMPORT = "1-0:1.29.0"
CUT = {"start": datetime(2026, 3, 28, 13, 15, tzinfo=UTC), "end": datetime(2026, 3, 30, 1, 30, tzinfo=UTC)}


def _meters(conn: psycopg.Connection[Any], *names: str) -> None:
    for name in names:
        conn.execute(
            "INSERT INTO amiflow.meters (name, protocol, timezone) VALUES (%s, 'mqtt', 'Europe/Berlin')", (name,)
        )


def _write(
    conn: psycopg.Connection[Any], meter: str, ts: Any, values: Any, *, obis: str = "1-0:1.29.0", q: int = 0
) -> None:
    BatchWriter(conn).write(ReadingBatch.from_columns(meter, obis, ts, values, unit="Wh", quality=q))


def _grid(days: int, step: int = 900, start: datetime = DAY0) -> np.ndarray:
    lo = int(start.timestamp())
    return lo + step * np.arange(1, days * 86400 // step + 1, dtype=np.int64)


def _read(conn: psycopg.Connection[Any], names: list[str], **kw: Any) -> IntervalMatrix:
    start = kw.pop("start", datetime(2026, 3, 27, 5, tzinfo=ZoneInfo("Europe/Berlin")))
    end = kw.pop("end", datetime(2026, 4, 2, tzinfo=ZoneInfo("Europe/Berlin")))
    return read_intervals(conn, names, kw.pop("obis", "1-0:1.29.0"), start, end, **kw)


def _same(a: IntervalMatrix, b: IntervalMatrix) -> None:
    assert a.meters == b.meters and np.array_equal(a.ts, b.ts)
    assert np.array_equal(a.values, b.values, equal_nan=True)
    assert np.array_equal(a.quality, b.quality) and np.array_equal(a.present, b.present)
    assert a.unaligned == b.unaligned


def _fleet(conn: psycopg.Connection[Any]) -> list[str]:
    _meters(conn, "FULL", "GAPS", "FIVE", "ODD", "EMPTY")
    ts = _grid(7)
    rng = np.random.default_rng(3)
    _write(conn, "FULL", ts, rng.uniform(0, 500, len(ts)).round(3))
    keep = rng.random(len(ts)) > 0.1
    _write(conn, "GAPS", ts[keep], rng.uniform(0, 500, int(keep.sum())), q=int(QualityFlag.SUSPECT))
    five = _grid(7, 300)
    _write(conn, "FIVE", five, np.ones(len(five)))  # 5-min data: off the packed 15-min grid, never packed
    odd = ts.copy()
    odd[100] += 7  # one reading off the grid on the second day: that meter-day stays rows
    _write(conn, "ODD", odd, np.full(len(odd), 2.0))
    _write(conn, "FULL", ts[::4], np.full(len(ts[::4]), -1.0), obis="1-0:2.29.0")
    return ["FULL", "GAPS", "FIVE", "ODD", "EMPTY", "NOPE"]


def _pack(conn: psycopg.Connection[Any]) -> Any:
    return pack_days(conn, since=date(2026, 3, 26), until=date(2026, 4, 3), now=NOW)


def test_packed_reads_equal_row_reads(db_conn: psycopg.Connection[Any]) -> None:
    names = _fleet(db_conn)
    cases: list[dict[str, Any]] = [{}, {"interval_s": 3600}, {"interval_s": 300}, {"obis": "1-0:2.29.0"}, CUT]
    before = [_read(db_conn, names, **dict(c)) for c in cases]
    result = _pack(db_conn)
    assert result.days == 9 and result.unpackable == 7 + 1  # FIVE's 7 days and ODD's second day
    assert result.packs == 7 + 7 + 6 + 7  # FULL import, GAPS, ODD (6 days), FULL export
    assert db_conn.execute("SELECT count(*) FROM amiflow.packed_days").fetchone() == (result.packs,)
    for case, expected in zip(cases, before, strict=True):
        _same(_read(db_conn, names, **dict(case)), expected)
    assert before[0].unaligned == 2 * 552 + 1 and before[2].unaligned == 1  # FIVE off the 15-min grid, ODD off all
    assert _pack(db_conn).days == 0  # done days are not packed again


def test_a_late_write_into_a_packed_day_is_read_and_repacked(db_conn: psycopg.Connection[Any]) -> None:
    names = _fleet(db_conn)
    _pack(db_conn)
    ts = _grid(7)
    _meters(db_conn, "LATE")
    _write(db_conn, "LATE", ts[200:210], np.full(10, 9.0))  # a backfill into packed days
    _write(db_conn, "GAPS", ts, np.full(len(ts), 1.0))  # re-sent: duplicates and the missing ones filled
    dirty = db_conn.execute("SELECT count(*) FROM amiflow.pack_dirty").fetchone()
    assert dirty is not None and dirty[0] >= 2
    packed = _read(db_conn, [*names, "LATE"])
    db_conn.execute("TRUNCATE amiflow.packed_days")
    rows_only = _read(db_conn, [*names, "LATE"])
    _same(packed, rows_only)
    assert packed.present[-1].sum() == 10
    db_conn.execute("DELETE FROM amiflow.pack_log")
    result = _pack(db_conn)
    assert result.days == 9 and db_conn.execute("SELECT count(*) FROM amiflow.pack_dirty").fetchone() == (0,)
    _same(_read(db_conn, [*names, "LATE"]), rows_only)


def test_dirty_meter_days_are_repacked(db_conn: psycopg.Connection[Any]) -> None:
    names = _fleet(db_conn)
    _pack(db_conn)
    _write(db_conn, "GAPS", _grid(7), np.full(7 * 96, 1.0))
    n_dirty = db_conn.execute("SELECT count(*) FROM amiflow.pack_dirty").fetchone()[0]  # type: ignore[index]
    again = _pack(db_conn)
    assert again.days == 0 and again.repacked == n_dirty > 0
    assert db_conn.execute("SELECT count(*) FROM amiflow.pack_dirty").fetchone() == (0,)
    packed = _read(db_conn, names)
    assert packed.present[1].all()
    db_conn.execute("TRUNCATE amiflow.packed_days")
    _same(packed, _read(db_conn, names))


def test_updates_deletes_and_truncate_invalidate(db_conn: psycopg.Connection[Any]) -> None:
    names = _fleet(db_conn)
    _pack(db_conn)
    db_conn.execute("UPDATE amiflow.readings SET value = 4242 WHERE ts = %s AND channel_id = 1",
                    (datetime(2026, 3, 29, 12, tzinfo=UTC),))  # fmt: skip
    db_conn.execute("DELETE FROM amiflow.readings WHERE ts = %s", (datetime(2026, 3, 30, 12, tzinfo=UTC),))
    got = _read(db_conn, names)
    col = int((datetime(2026, 3, 29, 12, tzinfo=UTC).timestamp() - got.ts[0]) // 900) + 1
    assert got.values[0, col - 1] == 4242
    db_conn.execute("TRUNCATE amiflow.packed_days")
    _same(got, _read(db_conn, names))
    _pack(db_conn)
    db_conn.execute("TRUNCATE amiflow.readings")
    for table in ("packed_days", "pack_log", "pack_dirty"):
        assert db_conn.execute(f"SELECT count(*) FROM amiflow.{table}").fetchone() == (0,)
    assert not _read(db_conn, names).present.any()


def test_the_packer_waits_for_a_writer_of_the_same_day(db_url: str, db_conn: psycopg.Connection[Any]) -> None:
    _meters(db_conn, "W")
    ts = _grid(2)
    _write(db_conn, "W", ts[:96], np.ones(96))
    with psycopg.connect(db_url, autocommit=True) as writer_conn:
        writer = BatchWriter(writer_conn)
        tx = writer_conn.transaction()
        tx.__enter__()
        writer.write(ReadingBatch.from_columns("W", "1-0:1.29.0", ts[96:], np.full(96, 2.0), unit="Wh"))
        done: list[Any] = []

        def pack() -> None:
            with psycopg.connect(db_url, autocommit=True) as conn:
                done.append(pack_days(conn, since=DAY0.date(), until=DAY0.date() + timedelta(days=1), now=NOW))

        packer = threading.Thread(target=pack)
        packer.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            row = db_conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'advisory'"
            ).fetchone()
            if row and row[0]:
                break
            time.sleep(0.02)
        assert row is not None and row[0] == 1, "the packer waits for the writer's day lock"
        assert not done
        tx.__exit__(None, None, None)  # the writer commits
        packer.join(10)
    assert done and done[0].readings == 192
    packs = db_conn.execute("SELECT day, readings FROM amiflow.packed_days ORDER BY day").fetchall()
    assert packs == [(date(2026, 3, 27), 96), (date(2026, 3, 28), 96)]


def test_a_reader_without_the_packs_privilege_reads_rows(db_conn: psycopg.Connection[Any]) -> None:
    names = _fleet(db_conn)
    _pack(db_conn)
    packed = _read(db_conn, names)
    role = f"r_{int(time.time() * 1000) % 10**9}"
    db_conn.execute(f'CREATE ROLE "{role}"')
    try:
        db_conn.execute(f'GRANT USAGE ON SCHEMA amiflow TO "{role}"')
        db_conn.execute(f'GRANT SELECT ON amiflow.meters, amiflow.channels, amiflow.readings TO "{role}"')
        with db_conn.transaction():
            db_conn.execute(f'SET LOCAL ROLE "{role}"')
            _same(_read(db_conn, names), packed)
    finally:
        db_conn.execute(f'DROP OWNED BY "{role}"')
        db_conn.execute(f'DROP ROLE "{role}"')


def test_passes_missed_while_down_are_caught_up(db_conn: psycopg.Connection[Any]) -> None:
    _meters(db_conn, "C")
    _write(db_conn, "C", _grid(9), np.ones(9 * 96))  # 2026-03-27 .. 2026-04-04
    first = pack_days(db_conn, now=datetime(2026, 3, 29, 12, tzinfo=UTC))  # the default lookback: 3 days
    assert first.days == 3  # 03-26 (nothing stored) .. 03-28
    # amiflow down for a week: the next default pass starts the day after the last packed one, not 3 days back
    db_conn.execute("UPDATE amiflow.pack_log SET finished_at = NULL WHERE day = DATE '2026-03-27'")
    later = pack_days(db_conn, now=datetime(2026, 4, 6, 12, tzinfo=UTC))
    assert later.days == 1 + 8  # the unfinished 03-27, and 03-29 .. 04-05 (the last day settled)
    logged = db_conn.execute("SELECT count(*) FROM amiflow.pack_log WHERE finished_at IS NOT NULL").fetchone()
    assert logged == (11,)  # 03-26 .. 04-05
    packed = db_conn.execute("SELECT count(*), sum(readings) FROM amiflow.packed_days").fetchone()
    assert packed == (9, 9 * 96)
