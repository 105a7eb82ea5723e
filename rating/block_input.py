"""Reading one block's inputs for VEE and rating: the meters' intervals (the month plus a history), register deltas,
outage events, clock offsets and multipliers, and the earlier monthly peaks that demand ratchets look back on.

Intervals come from the foundation reader (amiflow.db.reader) on the import channel (``channel``: the tariff's,
``1-0:1.29.0`` for electricity, ``6-0:1.29.0`` heat, ``8-0:1.29.0`` water), the register delta from the register of
that channel (``C.29.E`` -> ``C.8.E``); export is read only for tariffs that bill it. The functions only run
statements on the connection they are given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import psycopg

from amiflow.db.reader import read_intervals
from rating.service_store import Service, services_in
from rating.vee import VeeInput, local_start_s, outage_mask

__all__ = [
    "EXPORT_OBIS",
    "IMPORT_OBIS",
    "REGISTER_OBIS",
    "BlockData",
    "fetch_prior_peaks",
    "load_block",
    "month_bounds",
    "peak_grid",
    "prior_peaks",
    "register_of",
]

IMPORT_OBIS = "1-0:1.29.0"
EXPORT_OBIS = "1-0:2.29.0"
REGISTER_OBIS = "1-0:1.8.0"
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class BlockData:
    """Everything VEE and rating need for one block, read from the database."""

    meters: tuple[str, ...]
    meter_ids: npt.NDArray[np.int64]  # -1 for a meter no longer registered
    accounts: tuple[str | None, ...]
    vee: VeeInput
    export_wh: F64 | None  # (M, P) period columns, NaN = missing
    read_s: float = 0.0
    services: dict[int, list[Service] | None] = field(default_factory=dict)  # by meter id (rating.service_store)
    peak_rows: list[tuple[Any, ...]] = field(default_factory=list)  # earlier bills' peaks (fetch_prior_peaks)
    channel: str = IMPORT_OBIS  # the interval channel read (the tariff's)


def month_bounds(period: date, tz: str, history_weeks: int) -> tuple[datetime, datetime, datetime]:
    """(history start, period start, period end) as aware UTC datetimes of local midnights."""
    zone = ZoneInfo(tz)
    start = datetime(period.year, period.month, 1, tzinfo=zone)
    nxt = date(period.year + period.month // 12, period.month % 12 + 1, 1)
    end = datetime(nxt.year, nxt.month, 1, tzinfo=zone)
    hist = datetime.combine(start.date() - timedelta(weeks=history_weeks), datetime.min.time(), zone)
    return hist.astimezone(UTC), start.astimezone(UTC), end.astimezone(UTC)


def register_of(channel: str) -> str:
    """The cumulative register of an interval channel: ``A-B:C.29.E`` -> ``A-B:C.8.E``."""
    head, _, tail = channel.rpartition(":")
    parts = tail.split(".")
    return f"{head}:{parts[0]}.8.{parts[2]}" if len(parts) == 3 and parts[1] == "29" else REGISTER_OBIS


def _register_at(
    conn: psycopg.Connection[Any], ids: list[int], at: datetime, tol_s: int, register: str = REGISTER_OBIS
) -> dict[int, float]:
    rows = conn.execute(
        "SELECT DISTINCT ON (r.meter_id) r.meter_id, r.value FROM amiflow.readings r"
        " JOIN amiflow.channels c ON c.id = r.channel_id AND c.obis = %s"
        " WHERE r.meter_id = ANY(%s) AND r.ts BETWEEN %s - make_interval(secs => %s) AND %s + make_interval(secs => %s)"
        " ORDER BY r.meter_id, abs(extract(epoch FROM r.ts - %s)), r.ts",
        (register, ids, at, tol_s, at, tol_s, at),
    ).fetchall()
    return {int(r[0]): float(r[1]) for r in rows}


def _events(
    conn: psycopg.Connection[Any], ids: list[int], lo: datetime, hi: datetime
) -> list[tuple[int, datetime, str]]:
    rows = conn.execute(
        "SELECT meter_id, ts, code FROM amiflow.meter_events WHERE meter_id = ANY(%s)"
        " AND code IN ('power_down', 'power_up') AND ts > %s - interval '31 days' AND ts <= %s",
        (ids, lo, hi),
    ).fetchall()
    return [(int(r[0]), r[1], str(r[2])) for r in rows]


def _clock_offsets(conn: psycopg.Connection[Any], ids: list[int], lo: datetime, hi: datetime) -> dict[int, float]:
    if conn.execute("SELECT to_regclass('amiflow.clock_checks')").fetchone() in (None, (None,)):
        return {}
    rows = conn.execute(
        "SELECT meter_id, max(abs(offset_s)) FROM amiflow.clock_checks WHERE meter_id = ANY(%s)"
        " AND checked_at > %s AND checked_at <= %s GROUP BY meter_id",
        (ids, lo, hi),
    ).fetchall()
    return {int(r[0]): float(r[1]) for r in rows}


def load_block(
    conn: psycopg.Connection[Any],
    meters: Sequence[str],
    *,
    period: date,
    tz: str,
    history_weeks: int,
    with_export: bool,
    interval_s: int = 900,
    peak_codes: Sequence[str] = (),
    peak_months: int = 0,
    channel: str = IMPORT_OBIS,
) -> BlockData:
    """Read a block: intervals (history + period), register delta, outage events, clock offsets, multipliers, the
    meters' service periods in the month and (for ratchet tariffs: ``peak_codes`` over ``peak_months``) their
    earlier bills' peaks."""
    hist, start, end = month_bounds(period, tz, history_weeks)
    names = list(meters)
    rows = conn.execute(
        "SELECT name, id, (ct_ratio * vt_ratio)::float8, account FROM amiflow.meters WHERE name = ANY(%s)", (names,)
    ).fetchall()
    info = {r[0]: (int(r[1]), float(r[2])) for r in rows}
    account_of = {r[0]: r[3] for r in rows}
    accounts = tuple(account_of.get(n) for n in names)
    ids = np.array([info.get(n, (-1, 1.0))[0] for n in names], dtype=np.int64)
    mult = np.array([info.get(n, (-1, 1.0))[1] for n in names], dtype=np.float64)
    mat = read_intervals(conn, names, channel, hist, end, interval_s)
    p0 = int((start - hist).total_seconds()) // interval_s
    id_list = [int(i) for i in ids if i >= 0]
    row_of = {int(i): k for k, i in enumerate(ids) if i >= 0}
    register = register_of(channel)
    reg0 = _register_at(conn, id_list, start, interval_s, register)
    reg1 = _register_at(conn, id_list, end, interval_s, register)
    delta = np.array([reg1[i] - reg0[i] if i in reg0 and i in reg1 else np.nan for i in ids.tolist()], dtype=np.float64)
    events = _events(conn, id_list, hist, end)
    outage = outage_mask(
        mat.ts,
        interval_s,
        len(names),
        [row_of[e[0]] for e in events],
        [int(e[1].timestamp()) for e in events],
        [e[2] == "power_down" for e in events],
    )
    clocks = _clock_offsets(conn, id_list, start, end)
    clock = np.array([clocks.get(int(i), np.nan) for i in ids], dtype=np.float64)
    export = None
    if with_export:
        export = read_intervals(conn, names, EXPORT_OBIS, start, end, interval_s).values
    vee = VeeInput(
        ts=mat.ts,
        values=mat.values,
        period_from=p0,
        local_s=local_start_s(mat.ts, interval_s, tz),
        step_s=interval_s,
        quality=mat.quality,
        outage=outage,
        register_delta_wh=delta,
        multiplier=mult,
        clock_offset_s=clock,
    )
    nxt = date(period.year + period.month // 12, period.month % 12 + 1, 1)
    services = services_in(conn, id_list, period, nxt)
    peaks = fetch_prior_peaks(conn, names, peak_codes, period, peak_months)
    return BlockData(tuple(names), ids, accounts, vee, export, services=services, peak_rows=peaks, channel=channel)


def _prior_months(period: date, months: int) -> list[date]:
    starts = []
    y, mth = period.year, period.month
    for _ in range(months):
        y, mth = (y, mth - 1) if mth > 1 else (y - 1, 12)
        starts.append(date(y, mth, 1))
    return starts


def fetch_prior_peaks(
    conn: psycopg.Connection[Any], meters: Sequence[str], codes: Sequence[str], period: date, months: int
) -> list[tuple[Any, ...]]:
    """(meter, account, month, determinant name, value) of the ``peak_kw.<code>.all`` determinants of the latest
    bill versions of ``meters`` in the ``months`` before ``period``."""
    if not codes or not meters or months <= 0:
        return []
    starts = _prior_months(period, months)
    rows = conn.execute(
        "SELECT DISTINCT ON (b.bill_id, d.name) b.meter, b.account, date_trunc('month', b.period_start)::date,"
        " d.name, d.value FROM amiflow.bills b JOIN amiflow.bill_determinants d ON d.bill = b.id"
        " WHERE b.meter = ANY(%s) AND b.period_start >= %s AND b.period_start < %s AND d.name = ANY(%s)"
        " ORDER BY b.bill_id, d.name, b.version DESC",
        (list(set(meters)), starts[-1], period, [f"peak_kw.{c}.all" for c in codes]),
    ).fetchall()
    return [tuple(r) for r in rows]


def peak_grid(
    rows: Sequence[tuple[Any, ...]],
    meters: Sequence[str],
    codes: Sequence[str],
    period: date,
    months: int,
    accounts: Sequence[str | None] | None = None,
) -> dict[str, F64]:
    """Per demand code, (M, months) monthly peaks in W from :func:`fetch_prior_peaks` rows, NaN unknown.

    A row's meter and (where ``accounts`` names one) account must match: a new occupant's ratchet does not inherit
    the previous one's peaks; a month with several bills (move-in / move-out) counts its highest. The most recent
    month is the last column.
    """
    out = {code: np.full((len(meters), months), np.nan) for code in codes}
    if not codes or not meters or months <= 0:
        return out
    col_of = {d: months - 1 - k for k, d in enumerate(_prior_months(period, months))}
    wanted = list(accounts) if accounts is not None else [None] * len(meters)
    rows_of: dict[str, list[int]] = {}
    for i, m in enumerate(meters):
        rows_of.setdefault(m, []).append(i)
    for meter, account, month, name, value in rows:
        grid, col = out[name.split(".")[1]], col_of.get(month)
        for i in rows_of.get(meter, []) if col is not None else []:
            if wanted[i] is None or wanted[i] == account:
                grid[i, col] = np.fmax(grid[i, col], float(value) * 1000.0)
    return out


def prior_peaks(
    conn: psycopg.Connection[Any],
    meters: Sequence[str],
    codes: Sequence[str],
    period: date,
    months: int,
    accounts: Sequence[str | None] | None = None,
) -> dict[str, F64]:
    """Per demand code, (M, months) monthly peaks in W of the previous months (latest bill versions), NaN unknown:
    :func:`fetch_prior_peaks` then :func:`peak_grid`."""
    rows = fetch_prior_peaks(conn, meters, codes, period, months)
    return peak_grid(rows, meters, codes, period, months, accounts)
