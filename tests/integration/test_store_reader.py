"""The numpy reader on a real server: dense matrices with gaps, DST days, meters without data; the views."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import psycopg
import pytest

from amiflow.db.reader import read_intervals
from amiflow.db.rollup import refresh_rollups
from amiflow.db.writer import BatchWriter
from amiflow.errors import ConfigError
from amiflow.types import QualityFlag, ReadingBatch

BERLIN = ZoneInfo("Europe/Berlin")


def _meter(conn: psycopg.Connection[Any], name: str, tz: str = "UTC") -> None:
    conn.execute("INSERT INTO amiflow.meters (name, protocol, timezone) VALUES (%s, 'mqtt', %s)", (name, tz))


def _write(conn: psycopg.Connection[Any], meter: str, ts: np.ndarray, values: np.ndarray, quality: int = 0) -> None:
    BatchWriter(conn).write(ReadingBatch.from_columns(meter, "1-0:1.29.0", ts, values, unit="Wh", quality=quality))


def test_gaps_are_nan_and_not_present(db_conn: psycopg.Connection[Any]) -> None:
    _meter(db_conn, "A")
    start = datetime(2026, 11, 2, tzinfo=UTC)
    ts = int(start.timestamp()) + 900 * np.arange(1, 97)
    values = np.arange(96, dtype=float)
    keep = np.ones(96, bool)
    keep[[0, 10, 11, 95]] = False
    _write(db_conn, "A", ts[keep], values[keep], quality=int(QualityFlag.SUSPECT))
    m = read_intervals(db_conn, ["A"], "1-0:1.29.0", start, datetime(2026, 11, 3, tzinfo=UTC))
    assert m.values.shape == (1, 96)
    assert np.array_equal(m.present[0], keep)
    assert np.isnan(m.values[0, ~keep]).all()
    assert np.array_equal(m.values[0, keep], values[keep])
    assert (m.quality[0, keep] == QualityFlag.SUSPECT).all() and (m.quality[0, ~keep] == 0).all()
    assert np.array_equal(m.ts, ts)


@pytest.mark.parametrize(("day", "expected"), [((2026, 3, 29), 92), ((2026, 10, 25), 100), ((2026, 6, 1), 96)])
def test_local_dst_days_have_92_or_100_quarter_hours(
    db_conn: psycopg.Connection[Any], day: tuple[int, int, int], expected: int
) -> None:
    _meter(db_conn, "B", "Europe/Berlin")
    start = datetime(*day, tzinfo=BERLIN)
    end = start + timedelta(days=1)  # wall-clock arithmetic: the next local midnight
    n = int(end.timestamp() - start.timestamp()) // 900
    assert n == expected
    ts = int(start.timestamp()) + 900 * np.arange(1, n + 1)
    _write(db_conn, "B", ts, np.ones(n))
    m = read_intervals(db_conn, ["B"], "1-0:1.29.0", start, end)
    assert m.values.shape == (1, expected) and m.present.all()


def test_meters_without_data_and_unknown_meters_keep_their_rows_in_order(db_conn: psycopg.Connection[Any]) -> None:
    for name in ("C1", "C2", "C3"):
        _meter(db_conn, name)
    start = datetime(2026, 11, 2, tzinfo=UTC)
    ts = int(start.timestamp()) + 900 * np.arange(1, 5)
    _write(db_conn, "C3", ts, np.full(4, 3.0))
    _write(db_conn, "C1", ts, np.full(4, 1.0))
    m = read_intervals(db_conn, ["C3", "NOPE", "C2", "C1"], "1-0:1.29.0", start, datetime(2026, 11, 2, 1, tzinfo=UTC))
    assert m.meters == ("C3", "NOPE", "C2", "C1")
    assert np.array_equal(m.present.sum(axis=1), [4, 0, 0, 4])
    assert m.values[0, 0] == 3.0 and m.values[3, 0] == 1.0
    empty = read_intervals(db_conn, ["C1"], "1-0:2.29.0", start, datetime(2026, 11, 2, 1, tzinfo=UTC))
    assert not empty.present.any()


def test_bad_ranges_are_config_errors(db_conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(ConfigError, match="timezone-aware"):
        read_intervals(db_conn, ["A"], "1-0:1.29.0", datetime(2026, 1, 1), datetime(2026, 1, 2))
    with pytest.raises(ConfigError, match="whole 900-s intervals"):
        read_intervals(
            db_conn, ["A"], "1-0:1.29.0", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 0, 7, tzinfo=UTC)
        )


def test_daily_energy_view_uses_the_meters_local_day(db_conn: psycopg.Connection[Any]) -> None:
    _meter(db_conn, "D", "Europe/Berlin")
    start = datetime(2026, 11, 2, tzinfo=BERLIN)  # 23:00 UTC the day before
    ts = int(start.timestamp()) + 900 * np.arange(1, 97)
    _write(db_conn, "D", ts, np.full(96, 250.0))  # 24 kWh on the local day 2026-11-02
    db_conn.execute("SELECT * FROM amiflow.v_daily_energy").fetchall()  # answers before the first refresh too
    refresh_rollups(db_conn)
    rows = db_conn.execute("SELECT day::text, kwh_import, kwh_export FROM amiflow.v_daily_energy").fetchall()
    assert rows == [("2026-11-02", 24.0, 0.0)]
    refresh_rollups(db_conn)  # a second refresh (concurrently) works too
