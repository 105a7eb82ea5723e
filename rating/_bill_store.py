"""Database side of VEE and the billing run: meter selection, runs and block plans, block inputs, skips.

Writing a block's results is in rating._bill_write. Everything a block writes (VEE pre/post intervals and results,
bills, lines, determinants, outbox rows, skipped meters, the block's 'done' mark) is written by the caller inside
ONE transaction; these functions only run statements on the connection they are given.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg.types.json import Jsonb

from amiflow.db.reader import read_intervals
from amiflow.errors import StorageError
from rating.vee import VeeInput, local_start_s, outage_mask

__all__ = [
    "IMPORT_OBIS",
    "BlockData",
    "BlockPlan",
    "DueMeter",
    "block_summaries",
    "claim_block",
    "cycle_of",
    "finish_run",
    "load_block",
    "mark_block_done",
    "month_bounds",
    "open_run",
    "plan_blocks",
    "prior_peaks",
    "select_meters",
    "store_skips",
]

IMPORT_OBIS = "1-0:1.29.0"
EXPORT_OBIS = "1-0:2.29.0"
REGISTER_OBIS = "1-0:1.8.0"
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class DueMeter:
    """A meter considered by a run (in the cycle)."""

    id: int
    name: str
    account: str | None
    tariff: str | None
    timezone: str
    multiplier: float
    status: str


@dataclass(frozen=True, slots=True)
class BlockPlan:
    """One block of a run: meters of one tariff and time zone, in name order."""

    block_no: int
    tariff: str | None
    timezone: str
    meters: tuple[str, ...]
    done: bool = False


def cycle_of(name: str, explicit: str | None, cycles: int) -> str:
    """The meter's billing cycle: its ``amiflow.meter_cycles`` row, else ``1 + crc32(name) % cycles`` (stable)."""
    if explicit:
        return explicit
    return str(1 + zlib.crc32(name.encode()) % cycles)


def select_meters(conn: psycopg.Connection[Any], cycle: str | None, cycles: int) -> list[DueMeter]:
    """Meters of ``cycle`` (all meters when None), in name order."""
    rows = conn.execute(
        "SELECT m.id, m.name, m.account, m.tariff, m.timezone, (m.ct_ratio * m.vt_ratio)::float8, m.status, c.cycle"
        " FROM amiflow.meters m LEFT JOIN amiflow.meter_cycles c ON c.meter_id = m.id ORDER BY m.name"
    ).fetchall()
    return [
        DueMeter(r[0], r[1], r[2], r[3], r[4], float(r[5]), r[6])
        for r in rows
        if cycle is None or cycle_of(r[1], r[7], cycles) == cycle
    ]


def plan_blocks(meters: Iterable[DueMeter], block_meters: int) -> list[BlockPlan]:
    """Group meters by (tariff, time zone) and cut each group into blocks of at most ``block_meters``."""
    groups: dict[tuple[str, str], list[str]] = {}
    for m in meters:
        groups.setdefault((m.tariff or "", m.timezone), []).append(m.name)
    plans: list[BlockPlan] = []
    for (tariff, tz), names in sorted(groups.items()):
        names.sort()
        for lo in range(0, len(names), block_meters):
            plans.append(BlockPlan(len(plans), tariff or None, tz, tuple(names[lo : lo + block_meters])))
    return plans


def open_run(
    conn: psycopg.Connection[Any],
    *,
    kind: str,
    period: date,
    cycle: str,
    plan: Sequence[BlockPlan],
    params: dict[str, Any],
) -> tuple[int, list[BlockPlan], bool]:
    """Resume the unfinished run of (kind, period, cycle) or start a new one with ``plan``.

    Returns (run id, its block plan with the committed blocks marked done, resumed?). A resumed run keeps its own
    stored plan, so the blocks committed before the crash are exactly the ones skipped.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('amiflow.bill_runs'))")
        row = conn.execute(
            "SELECT id FROM amiflow.bill_runs WHERE kind = %s AND period = %s AND cycle = %s AND status <> 'done'"
            " ORDER BY id DESC LIMIT 1",
            (kind, period, cycle),
        ).fetchone()
        if row is not None:
            run_id = int(row[0])
            conn.execute("UPDATE amiflow.bill_runs SET status = 'running' WHERE id = %s", (run_id,))
            stored = conn.execute(
                "SELECT block_no, tariff, timezone, meters, state = 'done' FROM amiflow.bill_run_blocks"
                " WHERE run_id = %s ORDER BY block_no",
                (run_id,),
            ).fetchall()
            return run_id, [BlockPlan(r[0], r[1], r[2], tuple(r[3]), r[4]) for r in stored], True
        row = conn.execute(
            "INSERT INTO amiflow.bill_runs (kind, period, cycle, params) VALUES (%s, %s, %s, %s) RETURNING id",
            (kind, period, cycle, Jsonb(params)),
        ).fetchone()
        assert row is not None
        run_id = int(row[0])
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO amiflow.bill_run_blocks (run_id, block_no, tariff, timezone, meters)"
                " VALUES (%s, %s, %s, %s, %s)",
                [(run_id, b.block_no, b.tariff, b.timezone, list(b.meters)) for b in plan],
            )
    return run_id, list(plan), False


def claim_block(conn: psycopg.Connection[Any], run_id: int, block_no: int) -> bool:
    """Lock the block's row in the caller's transaction; False when it is already done (skip it)."""
    row = conn.execute(
        "SELECT state FROM amiflow.bill_run_blocks WHERE run_id = %s AND block_no = %s FOR UPDATE",
        (run_id, block_no),
    ).fetchone()
    if row is None:
        raise StorageError(f"billing run {run_id} has no block {block_no}")
    return bool(row[0] != "done")


def mark_block_done(conn: psycopg.Connection[Any], run_id: int, block_no: int, summary: dict[str, Any]) -> None:
    conn.execute(
        "UPDATE amiflow.bill_run_blocks SET state = 'done', summary = %s, committed_at = now()"
        " WHERE run_id = %s AND block_no = %s",
        (Jsonb(summary), run_id, block_no),
    )


def finish_run(conn: psycopg.Connection[Any], run_id: int, summary: dict[str, Any], status: str = "done") -> None:
    conn.execute(
        "UPDATE amiflow.bill_runs SET status = %s, summary = %s, finished_at = now() WHERE id = %s",
        (status, Jsonb(summary), run_id),
    )


def block_summaries(conn: psycopg.Connection[Any], run_id: int) -> list[dict[str, Any]]:
    """Summaries of the run's committed blocks (a resumed run adds those of the blocks done before the crash)."""
    rows = conn.execute(
        "SELECT summary FROM amiflow.bill_run_blocks WHERE run_id = %s AND state = 'done' ORDER BY block_no",
        (run_id,),
    ).fetchall()
    return [r[0] for r in rows if r[0] is not None]


def store_skips(conn: psycopg.Connection[Any], run_id: int, skips: Sequence[tuple[str, str, str | None]]) -> None:
    """Record (meter, reason, detail) of meters the run did not bill (a re-run of the block replaces them)."""
    if not skips:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO amiflow.bill_run_skips (run_id, meter, reason, detail) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (run_id, meter) DO UPDATE SET reason = EXCLUDED.reason, detail = EXCLUDED.detail",
            [(run_id, m, r, d) for m, r, d in skips],
        )


# -- block inputs ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BlockData:
    """Everything VEE and rating need for one block, read from the database."""

    meters: tuple[str, ...]
    meter_ids: npt.NDArray[np.int64]  # -1 for a meter no longer registered
    accounts: tuple[str | None, ...]
    vee: VeeInput
    export_wh: F64 | None  # (M, P) period columns, NaN = missing
    read_s: float = 0.0


def month_bounds(period: date, tz: str, history_weeks: int) -> tuple[datetime, datetime, datetime]:
    """(history start, period start, period end) as aware UTC datetimes of local midnights."""
    zone = ZoneInfo(tz)
    start = datetime(period.year, period.month, 1, tzinfo=zone)
    nxt = date(period.year + period.month // 12, period.month % 12 + 1, 1)
    end = datetime(nxt.year, nxt.month, 1, tzinfo=zone)
    hist = datetime.combine(start.date() - timedelta(weeks=history_weeks), datetime.min.time(), zone)
    return hist.astimezone(UTC), start.astimezone(UTC), end.astimezone(UTC)


def _register_at(conn: psycopg.Connection[Any], ids: list[int], at: datetime, tol_s: int) -> dict[int, float]:
    rows = conn.execute(
        "SELECT DISTINCT ON (r.meter_id) r.meter_id, r.value FROM amiflow.readings r"
        " JOIN amiflow.channels c ON c.id = r.channel_id AND c.obis = %s"
        " WHERE r.meter_id = ANY(%s) AND r.ts BETWEEN %s - make_interval(secs => %s) AND %s + make_interval(secs => %s)"
        " ORDER BY r.meter_id, abs(extract(epoch FROM r.ts - %s)), r.ts",
        (REGISTER_OBIS, ids, at, tol_s, at, tol_s, at),
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
) -> BlockData:
    """Read a block: intervals (history + period), register delta, outage events, clock offsets, multipliers."""
    hist, start, end = month_bounds(period, tz, history_weeks)
    names = list(meters)
    rows = conn.execute(
        "SELECT name, id, (ct_ratio * vt_ratio)::float8, account FROM amiflow.meters WHERE name = ANY(%s)", (names,)
    ).fetchall()
    info = {r[0]: (int(r[1]), float(r[2])) for r in rows}
    accounts = tuple({r[0]: r[3] for r in rows}.get(n) for n in names)
    ids = np.array([info.get(n, (-1, 1.0))[0] for n in names], dtype=np.int64)
    mult = np.array([info.get(n, (-1, 1.0))[1] for n in names], dtype=np.float64)
    mat = read_intervals(conn, names, IMPORT_OBIS, hist, end, interval_s)
    p0 = int((start - hist).total_seconds()) // interval_s
    id_list = [int(i) for i in ids if i >= 0]
    row_of = {int(i): k for k, i in enumerate(ids) if i >= 0}
    reg0 = _register_at(conn, id_list, start, interval_s)
    reg1 = _register_at(conn, id_list, end, interval_s)
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
    return BlockData(tuple(names), ids, accounts, vee, export)


def prior_peaks(
    conn: psycopg.Connection[Any], meters: Sequence[str], codes: Sequence[str], period: date, months: int
) -> dict[str, F64]:
    """Per demand code, (M, months) billed monthly peaks in W of the previous months (latest versions), NaN unknown.

    Read from the ``peak_kw.<code>.all`` determinants of earlier bills; the most recent month is the last column.
    """
    out = {code: np.full((len(meters), months), np.nan) for code in codes}
    if not codes or not meters or months <= 0:
        return out
    starts = []
    y, mth = period.year, period.month
    for _ in range(months):
        y, mth = (y, mth - 1) if mth > 1 else (y - 1, 12)
        starts.append(date(y, mth, 1))
    first = starts[-1]
    rows = conn.execute(
        "SELECT DISTINCT ON (b.meter, b.period_start, d.name) b.meter, b.period_start, d.name, d.value"
        " FROM amiflow.bills b JOIN amiflow.bill_determinants d ON d.bill = b.id"
        " WHERE b.meter = ANY(%s) AND b.period_start >= %s AND b.period_start < %s AND d.name = ANY(%s)"
        " ORDER BY b.meter, b.period_start, d.name, b.version DESC",
        (list(meters), first, period, [f"peak_kw.{c}.all" for c in codes]),
    ).fetchall()
    row_of = {name: i for i, name in enumerate(meters)}
    col_of = {d: months - 1 - k for k, d in enumerate(starts)}
    for meter, pstart, name, value in rows:
        if pstart in col_of:
            out[name.split(".")[1]][row_of[meter], col_of[pstart]] = float(value) * 1000.0
    return out
