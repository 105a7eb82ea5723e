"""The reader: intervals of many meters into a dense numpy matrix, from packed days where they exist and from the
per-interval rows elsewhere, each through one binary COPY parsed with numpy.

psycopg's row-by-row COPY path hands Python one object per row (~0.5M rows/s); the raw binary stream parsed with
numpy reaches the backend's own speed (~2-3M rows/s), and packed days (:mod:`amiflow.db.packing`: 96 intervals per
row) several times that again. Both reads run in one REPEATABLE READ snapshot, so the matrix is the same as one read
of ``amiflow.readings`` would give: a day is taken from its pack or from its rows, never both, never neither.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import pq, sql

from amiflow.db.binary_copy import PG_EPOCH_S, copy_out, decode_columns
from amiflow.db.packing import DAY_S, SLOTS, STEP_S, read_packs
from amiflow.errors import ConfigError

__all__ = ["IntervalMatrix", "copy_out", "read_intervals"]

# timestamptz travels in binary COPY as int8 microseconds since 2000-01-01: no conversion on the server
_FIELDS = (("meter_id", "i4"), ("ts", "i8"), ("value", "f8"), ("quality", "i4"))
_MAX_RANGE_GROUPS = 16  # more distinct unpacked ranges than this: one lateral query over (meter, range) pairs


@dataclass(frozen=True, slots=True)
class IntervalMatrix:
    """Intervals of ``meters`` (rows) ending at ``ts`` (columns, epoch seconds UTC).

    ``values`` float64 in the channel's base unit with NaN where missing; ``quality`` int32 QualityFlag bits (0 where
    missing); ``present`` True where a reading is stored. ``unaligned`` counts stored readings that did not fall on
    an interval end (not placed in the matrix).
    """

    meters: tuple[str, ...]
    ts: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    quality: npt.NDArray[np.int32]
    present: npt.NDArray[np.bool_]
    interval_s: int
    unaligned: int = 0


@dataclass(slots=True)
class _Grid:
    """The matrix under construction: window (lo, hi] in epoch seconds, columns of interval_s."""

    lo: int
    hi: int
    step: int
    values: npt.NDArray[np.float64]
    quality: npt.NDArray[np.int32]
    present: npt.NDArray[np.bool_]
    unaligned: int = 0

    def place(self, rows: npt.NDArray[np.int64], ts: npt.NDArray[np.int64], value: Any, quality: Any) -> None:
        """Put readings (matrix row, end time in epoch seconds) in their cells; count those off the grid."""
        off = ts - self.lo
        inside = (off > 0) & (off <= self.hi - self.lo)
        aligned = inside & (off % self.step == 0)
        self.unaligned += int((inside & ~aligned).sum())
        cols = off[aligned] // self.step - 1
        self.values[rows[aligned], cols] = np.asarray(value)[aligned]
        self.quality[rows[aligned], cols] = np.asarray(quality)[aligned]
        self.present[rows[aligned], cols] = True


def _epoch(dt: datetime, name: str) -> int:
    if dt.tzinfo is None:
        raise ConfigError(f"{name} must be timezone-aware (got {dt.isoformat()})")
    return int(dt.timestamp())


@contextlib.contextmanager
def _snapshot(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """One REPEATABLE READ snapshot for the reads (inside the caller's transaction if it has one)."""
    if conn.info.transaction_status != pq.TransactionStatus.IDLE or not conn.autocommit:
        yield
        return
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


def _place_packs(grid: _Grid, packs: dict[str, npt.NDArray[Any]], row_of_id: npt.NDArray[np.int64]) -> None:
    rows = row_of_id[packs["meter_id"]]
    start = packs["day"] * DAY_S  # the day's first interval ends at start + 900
    whole = (start >= grid.lo) & (start + DAY_S <= grid.hi)
    rest = np.arange(len(rows))
    if grid.step == STEP_S and (grid.lo % STEP_S) == 0 and whole.any():
        # the usual case: whole days on the 15-min grid are runs of 96 columns at one offset, so the matrix is
        # viewed as (meters, days, 96) and each pack lands with one contiguous copy
        first = (grid.lo // STEP_S) % SLOTS
        first = (SLOTS - first) % SLOTS
        days = (grid.values.shape[1] - first) // SLOTS
        span = slice(first, first + SLOTS * days)
        w = np.flatnonzero(whole)
        j = ((start[w] - grid.lo) // STEP_S - first) // SLOTS
        shape = (len(grid.values), days, SLOTS)
        grid.values[:, span].reshape(shape)[rows[w], j] = packs["value"][w]
        grid.quality[:, span].reshape(shape)[rows[w], j] = packs["quality"][w]
        grid.present[:, span].reshape(shape)[rows[w], j] = ~np.isnan(packs["value"][w])
        rest = np.flatnonzero(~whole)
    if len(rest):
        v = packs["value"][rest]
        j, s = np.nonzero(~np.isnan(v))
        ts = start[rest][j] + STEP_S * (s + 1)
        grid.place(rows[rest][j], ts, v[j, s], packs["quality"][rest][j, s])


def _unpacked_ranges(
    ids: npt.NDArray[np.int64], packed: npt.NDArray[np.bool_], first_day: int, lo: int, hi: int
) -> dict[tuple[int, int], list[int]]:
    """(range lo, range hi] -> meter ids, covering every (meter, day) of the window without a pack."""
    edges = np.diff(np.pad(~packed, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    groups: dict[tuple[int, int], list[int]] = {}
    for r, c in zip(*np.nonzero(edges == 1), strict=True):
        stop = int(np.flatnonzero(edges[r, c:] == -1)[0]) + c
        a = max(lo, (first_day + int(c)) * DAY_S)
        b = min(hi, (first_day + stop) * DAY_S)
        groups.setdefault((a, b), []).append(int(ids[r]))
    return groups


def _rows_query(channel: int, groups: dict[tuple[int, int], list[int]]) -> sql.Composable:
    cols = sql.SQL("SELECT meter_id, ts, value, quality FROM amiflow.readings WHERE channel_id = {ch}").format(
        ch=sql.Literal(channel)
    )
    if len(groups) <= _MAX_RANGE_GROUPS:
        parts = [
            sql.SQL("{cols} AND meter_id = ANY({ids}) AND ts > to_timestamp({a}) AND ts <= to_timestamp({b})").format(
                cols=cols, ids=sql.Literal(sorted(ids)), a=sql.Literal(a), b=sql.Literal(b)
            )
            for (a, b), ids in sorted(groups.items())
        ]
        body: sql.Composable = sql.SQL(" UNION ALL ").join(parts)
    else:
        pairs = [(m, a, b) for (a, b), ids in groups.items() for m in ids]
        body = sql.SQL(
            "SELECT r.meter_id, r.ts, r.value, r.quality"
            " FROM unnest({m}::int4[], {a}::int8[], {b}::int8[]) AS g(m, a, b)"
            " CROSS JOIN LATERAL (SELECT meter_id, ts, value, quality FROM amiflow.readings WHERE channel_id = {ch}"
            " AND meter_id = g.m AND ts > to_timestamp(g.a) AND ts <= to_timestamp(g.b)) r"
        ).format(m=sql.Literal([p[0] for p in pairs]), a=sql.Literal([p[1] for p in pairs]),
                 b=sql.Literal([p[2] for p in pairs]), ch=sql.Literal(channel))  # fmt: skip
    return sql.SQL("COPY ({body}) TO STDOUT (FORMAT BINARY)").format(body=body)


def _resolve(conn: psycopg.Connection[Any], names: tuple[str, ...], obis: str) -> tuple[dict[str, int], Any]:
    ids = dict(conn.execute("SELECT name, id FROM amiflow.meters WHERE name = ANY(%s)", (list(names),)).fetchall())
    chan = conn.execute(
        "SELECT id, has_table_privilege('amiflow.packed_days', 'SELECT')"
        " AND has_table_privilege('amiflow.pack_log', 'SELECT') FROM amiflow.channels WHERE obis = %s",
        (obis,),
    ).fetchone()
    return ids, chan


def read_intervals(
    conn: psycopg.Connection[Any],
    meters: Sequence[str],
    obis: str,
    start: datetime,
    end: datetime,
    interval_s: int = 900,
) -> IntervalMatrix:
    """Read channel ``obis`` of ``meters`` for intervals ending in (start, end] into a meters x intervals matrix.

    Meters unknown to the registry or without data give rows of NaN. The number of columns is exact across DST
    changes (the range is in absolute time): a local day has 92, 96 or 100 quarter hours.
    """
    lo, hi = _epoch(start, "start"), _epoch(end, "end")
    if interval_s <= 0 or (hi - lo) % interval_s or hi <= lo:
        raise ConfigError(f"the range {start.isoformat()}..{end.isoformat()} is not whole {interval_s}-s intervals")
    n = (hi - lo) // interval_s
    names = tuple(meters)
    shape = (len(names), n)
    grid = _Grid(lo, hi, interval_s, np.full(shape, np.nan), np.zeros(shape, np.int32), np.zeros(shape, bool))
    ts_axis = lo + interval_s * np.arange(1, n + 1, dtype=np.int64)
    ids, chan = _resolve(conn, names, obis) if names else ({}, None)
    if ids and chan is not None:
        _read(conn, grid, names, ids, int(chan[0]), bool(chan[1]))
    return IntervalMatrix(names, ts_axis, grid.values, grid.quality, grid.present, interval_s, grid.unaligned)


def _read(
    conn: psycopg.Connection[Any], grid: _Grid, names: tuple[str, ...], ids: dict[str, int], channel: int, packs: bool
) -> None:
    row_of_id = np.full(max(ids.values()) + 1, -1, dtype=np.int64)
    for i, name in enumerate(names):
        if name in ids:
            row_of_id[ids[name]] = i
    id_arr = np.array(sorted(ids.values()), dtype=np.int64)
    first_day, last_day = grid.lo // DAY_S, (grid.hi - 1) // DAY_S
    packed = np.zeros((len(id_arr), last_day - first_day + 1), dtype=bool)
    with _snapshot(conn):
        if packs and conn.execute(
            "SELECT EXISTS (SELECT 1 FROM amiflow.pack_log WHERE day BETWEEN DATE '1970-01-01' + %s"
            " AND DATE '1970-01-01' + %s)",
            (first_day, last_day),
        ).fetchone() == (True,):
            got = read_packs(conn, channel, id_arr.tolist(), first_day, last_day)
            _place_packs(grid, got, row_of_id)
            packed[np.searchsorted(id_arr, got["meter_id"]), got["day"] - first_day] = True
        groups = _unpacked_ranges(id_arr, packed, first_day, grid.lo, grid.hi)
        if not groups:
            return
        rows = decode_columns(copy_out(conn, _rows_query(channel, groups).as_bytes(conn)), _FIELDS)
    ts = rows["ts"]
    on_second = ts % 1_000_000 == 0
    grid.unaligned += int((~on_second).sum())
    keep = np.flatnonzero(on_second)
    grid.place(row_of_id[rows["meter_id"][keep]], ts[keep] // 1_000_000 + PG_EPOCH_S, rows["value"][keep],
               rows["quality"][keep])  # fmt: skip
