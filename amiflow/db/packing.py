"""Packed days: the interval channels of a meter for one UTC day in one wide row (``amiflow.packed_days``, migration
0013), written by the packer below and read by :mod:`amiflow.db.reader` in place of 96 narrow rows.

A pack of (meter, channel, day d) holds every stored reading of that channel whose timestamp falls in
(d 00:00 UTC, d+1 00:00 UTC]: 96 little-endian float8 (NaN where no reading; stored values are always finite) and 96
little-endian int2 quality words; slot i is the interval ending at d 00:00 + (i + 1) x 900 s. A meter-day with a
reading off that grid, or with quality bits beyond int2, is not packed: the reader reads its rows as before.

The packer reads a day's rows under ``pg_advisory_xact_lock(1634560368, day)``; writers hold the shared form of that
lock for every day they write (``amiflow.pack_guard``), so a pack holds exactly the readings committed before it,
and a later write into a packed day drops the pack and marks the meter-day dirty (repacked by the next pass).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import sql

from amiflow.db.binary_copy import PG_EPOCH_DAY, PG_EPOCH_S, copy_out, decode_columns, encode_rows

__all__ = ["DAY_S", "PACK_LOCK", "SLOTS", "STEP_S", "PackResult", "build_packs", "pack_days", "read_packs"]

log = logging.getLogger(__name__)

DAY_S = 86_400
STEP_S = 900
SLOTS = DAY_S // STEP_S
PACK_LOCK = 1_634_560_368  # the first key of the day locks ("amip")
_PACK_FIELDS = (("meter_id", "i4"), ("channel_id", "i2"), ("day", "i4"), ("readings", "i2"),
                ("value", f"b{SLOTS * 8}"), ("quality", f"b{SLOTS * 2}"))  # fmt: skip
_ROW_FIELDS = (("meter_id", "i4"), ("channel_id", "i2"), ("ts", "i8"), ("value", "f8"), ("quality", "i4"))
_READ_FIELDS = (("meter_id", "i4"), ("day", "i4"), ("value", f"b{SLOTS * 8}"), ("quality", f"b{SLOTS * 2}"))


@dataclass(frozen=True, slots=True)
class PackResult:
    """What a packing pass did."""

    days: int = 0  # days packed (new or finished)
    packs: int = 0  # meter-channel-days written
    readings: int = 0  # readings packed
    repacked: int = 0  # dirty meter-days repacked
    unpackable: int = 0  # meter-channel-days left as rows (off-grid readings or wide quality)
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Packs:
    """Packs: (G,) keys (day in days since 1970), (G, 96) values and quality, readings per pack; how many
    meter-channel-days were left unpacked."""

    meter_id: npt.NDArray[np.int32]
    channel_id: npt.NDArray[np.int16]
    day: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]
    quality: npt.NDArray[np.int16]
    readings: npt.NDArray[np.int16]
    unpackable: int


def build_packs(meter_id: Any, channel_id: Any, ts_us: Any, value: Any, quality: Any) -> Packs:
    """Pack rows (unique per meter, channel, ts; ts in microseconds since 1970) by meter, channel and the UTC day the
    interval ends in. A group with any reading off the 15-min grid, a non-finite value or quality outside int2 is
    left out (counted in ``unpackable``)."""
    ts = np.asarray(ts_us, dtype=np.int64)
    value = np.asarray(value, dtype=np.float64)
    q = np.asarray(quality, dtype=np.int64)
    day_us, step_us = DAY_S * 1_000_000, STEP_S * 1_000_000
    day = (ts - 1) // day_us
    inv, first = _group(np.asarray(meter_id, dtype=np.int64) << 16 | np.asarray(channel_id, dtype=np.int64), day, ts)
    groups = len(first)
    off = ts - day * day_us
    slot = off // step_us - 1
    bad_row = (off % step_us != 0) | (q < 0) | (q > np.iinfo(np.int16).max) | ~np.isfinite(value)
    bad = np.zeros(groups, dtype=bool)
    bad[inv[bad_row]] = True
    ok_row = ~bad[inv]
    keep = np.flatnonzero(~bad)
    new_index = np.full(groups, -1, dtype=np.int64)
    new_index[keep] = np.arange(len(keep))
    g = new_index[inv[ok_row]]
    values = np.full((len(keep), SLOTS), np.nan)
    quals = np.zeros((len(keep), SLOTS), dtype=np.int16)
    values[g, slot[ok_row]] = value[ok_row]
    quals[g, slot[ok_row]] = q[ok_row]
    counts = np.bincount(g, minlength=len(keep)).astype(np.int16)
    rows = first[keep]
    return Packs(np.asarray(meter_id, dtype=np.int32)[rows], np.asarray(channel_id, dtype=np.int16)[rows], day[rows],
                 values, quals, counts, int(bad.sum()))  # fmt: skip


def _group(mc: npt.NDArray[np.int64], day: npt.NDArray[np.int64], ts: npt.NDArray[np.int64]) -> tuple[Any, Any]:
    """(group index per row, first row of each group) for the (meter-channel, day) groups. Rows that arrive in
    (meter, channel, ts) order (the index order the packer asks for) are grouped in one pass; others are sorted."""
    if not len(mc):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    ordered = bool(np.all((mc[1:] > mc[:-1]) | ((mc[1:] == mc[:-1]) & (ts[1:] > ts[:-1]))))
    order = None if ordered else np.lexsort((ts, day, mc))
    smc, sday = (mc, day) if order is None else (mc[order], day[order])
    change = np.r_[True, (smc[1:] != smc[:-1]) | (sday[1:] != sday[:-1])]
    sorted_inv = np.cumsum(change) - 1
    first_sorted = np.flatnonzero(change)
    if order is None:
        return sorted_inv, first_sorted
    inv = np.empty_like(sorted_inv)
    inv[order] = sorted_inv
    return inv, order[first_sorted]


def _day_number(d: date) -> int:
    return (d - date(1970, 1, 1)).days


def _date(day: int) -> date:
    return date(1970, 1, 1) + timedelta(days=day)


def _interval_channels(conn: psycopg.Connection[Any]) -> list[int]:
    return [int(r[0]) for r in conn.execute("SELECT id FROM amiflow.channels WHERE kind = 'interval' ORDER BY id")]


def _pack_chunk(conn: psycopg.Connection[Any], days: range, meters: Sequence[int], channels: Sequence[int]) -> Packs:
    """Pack consecutive ``days`` of ``meters`` in the caller's transaction (which holds the days' exclusive locks)."""
    query = sql.SQL(
        "COPY (SELECT meter_id, channel_id, ts, value, quality FROM amiflow.readings"
        " WHERE meter_id = ANY({m}) AND channel_id = ANY({c}) AND ts > to_timestamp({lo}) AND ts <= to_timestamp({hi})"
        " ORDER BY meter_id, channel_id, ts) TO STDOUT (FORMAT BINARY)"
    ).format(m=sql.Literal(list(meters)), c=sql.Literal(list(channels)), lo=sql.Literal(days[0] * DAY_S),
             hi=sql.Literal((days[-1] + 1) * DAY_S))  # fmt: skip
    rows = decode_columns(copy_out(conn, query.as_bytes(conn)), _ROW_FIELDS)
    ts_us = rows["ts"] + PG_EPOCH_S * 1_000_000
    packs = build_packs(rows["meter_id"], rows["channel_id"], ts_us, rows["value"], rows["quality"])
    span = (_date(days[0]), _date(days[-1]), list(meters))
    conn.execute(
        "DELETE FROM amiflow.packed_days WHERE day BETWEEN %s AND %s AND meter_id = ANY(%s) AND channel_id = ANY(%s)",
        (*span, list(channels)),
    )
    if len(packs.meter_id):
        cols: dict[str, npt.NDArray[Any]] = {
            "meter_id": packs.meter_id,
            "channel_id": packs.channel_id,
            "day": (packs.day - PG_EPOCH_DAY).astype(np.int32),
            "readings": packs.readings,
            "value": packs.value.astype("<f8"),
            "quality": packs.quality.astype("<i2"),
        }
        with conn.cursor() as cur, cur.copy("COPY amiflow.packed_days FROM STDIN (FORMAT BINARY)") as copy:
            for block in encode_rows(_PACK_FIELDS, cols, chunk_rows=8192):
                copy.write(block)
    conn.execute("DELETE FROM amiflow.pack_dirty WHERE day BETWEEN %s AND %s AND meter_id = ANY(%s)", span)
    return packs


def _pack_span(
    conn: psycopg.Connection[Any], days: range, meters: Sequence[int], channels: Sequence[int], chunk: int
) -> tuple[dict[int, tuple[int, int]], int]:
    """Pack ``meters`` over consecutive ``days`` in transactions of ``chunk`` meters.

    Returns {day: (packs, readings)} and the number of meter-channel-days left unpacked."""
    per_day: dict[int, tuple[int, int]] = {d: (0, 0) for d in days}
    unpackable = 0
    for lo in range(0, len(meters), chunk):
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, d) FROM unnest(%s::int4[]) AS d", (PACK_LOCK, list(days)))
            # the log rows first: from their commit on, writers into these days invalidate what is packed here
            conn.execute(
                "INSERT INTO amiflow.pack_log (day) SELECT DATE '1970-01-01' + d FROM unnest(%s::int4[]) AS d"
                " ON CONFLICT (day) DO NOTHING",
                (list(days),),
            )
            got = _pack_chunk(conn, days, meters[lo : lo + chunk], channels)
        n = np.bincount(got.day - days[0], minlength=len(days))
        r = np.bincount(got.day - days[0], weights=got.readings, minlength=len(days))
        for k, d in enumerate(days):
            per_day[d] = (per_day[d][0] + int(n[k]), per_day[d][1] + int(r[k]))
        unpackable += got.unpackable
    return per_day, unpackable


def pack_days(
    conn: psycopg.Connection[Any],
    *,
    since: date | None = None,
    until: date | None = None,
    settle_s: int = 3600,
    lookback_days: int = 3,
    meters_per_tx: int = 2000,
    days_per_tx: int = 7,
    now: datetime | None = None,
) -> PackResult:
    """Pack every due day and repack the dirty meter-days (autocommit connection, outside a transaction).

    Due: days from ``since`` to ``until`` (default: the last day that ended ``settle_s`` ago) that were never packed
    or whose packing did not finish. ``since`` defaults to ``lookback_days`` before today, or to the day after the
    last finished day when that is earlier (passes missed while amiflow was down are caught up), and days whose
    packing started but never finished are taken up again whenever they are.
    """
    started = time.perf_counter()
    now = now or datetime.now(UTC)
    last = (now - timedelta(seconds=settle_s)).date() - timedelta(days=1)
    until = min(until, last) if until is not None else last
    unfinished: list[int] = []
    if since is None:
        since = now.date() - timedelta(days=lookback_days)
        row = conn.execute("SELECT max(day) FROM amiflow.pack_log WHERE finished_at IS NOT NULL").fetchone()
        if row is not None and row[0] is not None:
            since = min(since, row[0] + timedelta(days=1))
        unfinished = [_day_number(r[0]) for r in conn.execute(
            "SELECT day FROM amiflow.pack_log WHERE finished_at IS NULL AND day < %s ORDER BY day", (since,)
        )]  # fmt: skip
    channels = _interval_channels(conn)
    meters = [int(r[0]) for r in conn.execute("SELECT id FROM amiflow.meters ORDER BY id")]
    finished = {r[0] for r in conn.execute(
        "SELECT day FROM amiflow.pack_log WHERE day BETWEEN %s AND %s AND finished_at IS NOT NULL", (since, until)
    )}  # fmt: skip
    due = unfinished + [_day_number(since) + k for k in range((until - since).days + 1)]
    due = [d for d in due if _date(d) not in finished] if channels and meters else []
    days = packs = readings = unpackable = 0
    while due:
        n = 1
        while n < days_per_tx and n < len(due) and due[n] == due[0] + n:
            n += 1
        span, due = range(due[0], due[0] + n), due[n:]
        per_day, u = _pack_span(conn, span, meters, channels, meters_per_tx)
        with conn.cursor() as cur:
            cur.executemany(
                "UPDATE amiflow.pack_log SET finished_at = now(), packs = %s, readings = %s WHERE day = %s",
                [(p, r, _date(d)) for d, (p, r) in per_day.items()],
            )
        days, unpackable = days + len(span), unpackable + u
        packs += sum(p for p, _ in per_day.values())
        readings += sum(r for _, r in per_day.values())
    repacked = 0
    for (day_d,) in conn.execute("SELECT DISTINCT day FROM amiflow.pack_dirty ORDER BY 1").fetchall():
        dirty = [int(r[0]) for r in conn.execute(
            "SELECT DISTINCT meter_id FROM amiflow.pack_dirty WHERE day = %s ORDER BY 1", (day_d,)
        )]  # fmt: skip
        day = _day_number(day_d)
        per_day, u = _pack_span(conn, range(day, day + 1), dirty, channels, meters_per_tx)
        repacked, unpackable = repacked + len(dirty), unpackable + u
        packs, readings = packs + per_day[day][0], readings + per_day[day][1]
    seconds = time.perf_counter() - started
    if days or repacked:
        log.info("packed %d day(s), repacked %d meter-day(s): %d packs of %d readings in %.1f s",
                 days, repacked, packs, readings, seconds)  # fmt: skip
    return PackResult(days, packs, readings, repacked, unpackable, seconds)


def read_packs(
    conn: psycopg.Connection[Any], channel_id: int, meter_ids: Sequence[int], first_day: int, last_day: int
) -> dict[str, npt.NDArray[Any]]:
    """The packs of ``meter_ids`` on days ``first_day..last_day`` (days since 1970): ``meter_id``, ``day`` (days
    since 1970), ``value`` (n, 96) float64 and ``quality`` (n, 96) int16."""
    query = sql.SQL(
        "COPY (SELECT meter_id, day, value, quality FROM amiflow.packed_days"
        " WHERE meter_id = ANY({m}) AND channel_id = {c} AND day BETWEEN {d0} AND {d1}) TO STDOUT (FORMAT BINARY)"
    ).format(m=sql.Literal(list(meter_ids)), c=sql.Literal(channel_id),
             d0=sql.Literal(date(1970, 1, 1) + timedelta(days=first_day)),
             d1=sql.Literal(date(1970, 1, 1) + timedelta(days=last_day)))  # fmt: skip
    cols = decode_columns(copy_out(conn, query.as_bytes(conn)), _READ_FIELDS)
    return {
        "meter_id": cols["meter_id"],
        "day": cols["day"].astype(np.int64) + PG_EPOCH_DAY,
        "value": cols["value"].view("<f8").astype(np.float64, copy=False),
        "quality": cols["quality"].view("<i2").astype(np.int16, copy=False),
    }
