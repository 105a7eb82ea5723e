"""Database side of VEE and the billing run: meter selection, block plans, block inputs, and storing results.

Everything a block writes (VEE pre/post intervals and results, bills, lines, determinants, outbox rows, skipped
meters, the block's 'done' mark) is written by the caller inside ONE transaction; these functions only run
statements on the connection they are given.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg.types.json import Jsonb

from amiflow.db._copy import PG_EPOCH_S
from amiflow.db.outbox import enqueue
from amiflow.db.reader import read_intervals
from amiflow.errors import StorageError
from rating.vee import VeeInput, VeeResult, local_start_s, outage_mask

__all__ = [
    "IMPORT_OBIS",
    "BlockData",
    "BlockPlan",
    "DueMeter",
    "bill_hash",
    "cycle_of",
    "finish_run",
    "load_block",
    "mark_block_done",
    "open_run",
    "prior_peaks",
    "select_meters",
    "store_bills",
    "store_skips",
    "store_vee",
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


# -- storing results ---------------------------------------------------------------------------------------------


def store_vee(
    conn: psycopg.Connection[Any],
    run_id: int,
    meter_ids: npt.NDArray[np.int64],
    result: VeeResult,
    period: date,
    channel_obis: str = IMPORT_OBIS,
) -> int:
    """Replace the period's VEE results and pre/post intervals of the block's meters; returns interval rows."""
    ch = conn.execute("SELECT id FROM amiflow.channels WHERE obis = %s", (channel_obis,)).fetchone()
    if ch is None:
        return 0
    known = meter_ids >= 0
    ids = [int(i) for i in meter_ids[known]]
    conn.execute(
        "DELETE FROM amiflow.vee_intervals WHERE meter_id = ANY(%s) AND channel_id = %s AND period_start = %s",
        (ids, ch[0], period),
    )
    r, c = np.nonzero(result.changed & known[:, None])
    if len(r):
        cols: dict[str, npt.NDArray[Any]] = {
            "meter_id": meter_ids[r],
            "channel_id": np.full(len(r), ch[0]),
            "ts": (result.ts[c] - PG_EPOCH_S) * 1_000_000,
            "period_start": np.full(len(r), (period - _PG_EPOCH_DATE).days),
            "pre_value": result.pre[r, c],
            "post_value": result.post[r, c],
            "quality": result.flags[r, c],
            "rules": result.rule_bits[r, c],
            "method": result.method[r, c],
        }
        with (
            conn.cursor() as cur,
            cur.copy(f"COPY amiflow.vee_intervals ({', '.join(_VEE_FIELDS)}) FROM STDIN (FORMAT BINARY)") as copy,
        ):
            copy.write(_encode_nullable(cols))
    share = result.estimated_share
    rows = []
    for i in np.flatnonzero(known).tolist():
        s = result.summary(i)
        rows.append((int(meter_ids[i]), ch[0], period, run_id, s["intervals"], s["estimated"], float(share[i]),
                     result.hold[i], Jsonb(s)))  # fmt: skip
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO amiflow.vee_results (meter_id, channel_id, period_start, run_id, intervals, estimated,"
            " estimated_share, hold, summary) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (meter_id, channel_id, period_start) DO UPDATE SET run_id = EXCLUDED.run_id,"
            " intervals = EXCLUDED.intervals, estimated = EXCLUDED.estimated,"
            " estimated_share = EXCLUDED.estimated_share, hold = EXCLUDED.hold, summary = EXCLUDED.summary,"
            " validated_at = now()",
            rows,
        )
    return len(r)


_VEE_FIELDS = {
    "meter_id": "i4",
    "channel_id": "i2",
    "ts": "i8",
    "period_start": "i4",
    "pre_value": "f8",
    "post_value": "f8",
    "quality": "i4",
    "rules": "i4",
    "method": "i2",
}
_PG_EPOCH_DATE = date(2000, 1, 1)
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)


def _encode_nullable(cols: dict[str, npt.NDArray[Any]]) -> bytes:
    """Binary COPY of the vee_intervals rows; NaN in pre_value/post_value is written as NULL.

    Rows are grouped by their NULL pattern; each group is one fixed-width numpy record array (a NULL field is just
    its length -1), so no Python object is made per row. Row order does not matter to COPY.
    """
    out = [_COPY_HEADER]
    nan_pre, nan_post = np.isnan(cols["pre_value"]), np.isnan(cols["post_value"])
    for null_pre in (False, True):
        for null_post in (False, True):
            sel = (nan_pre == null_pre) & (nan_post == null_post)
            if not sel.any():
                continue
            nulls = {"pre_value": null_pre, "post_value": null_post}
            fields: list[tuple[str, str]] = [("_n", ">i2")]
            for name, kind in _VEE_FIELDS.items():
                fields.append((f"_l_{name}", ">i4"))
                if not nulls.get(name, False):
                    fields.append((name, ">" + kind))
            block = np.empty(int(sel.sum()), dtype=np.dtype(fields))
            block["_n"] = len(_VEE_FIELDS)
            for name, kind in _VEE_FIELDS.items():
                if nulls.get(name, False):
                    block[f"_l_{name}"] = -1
                else:
                    block[f"_l_{name}"] = int(kind[1])
                    block[name] = cols[name][sel]
            out.append(block.tobytes())
    out.append(b"\xff\xff")
    return b"".join(out)


def bill_hash(bill: dict[str, Any]) -> str:
    """SHA-256 of the bill's canonical JSON without its version: equal hashes = the same bill content."""
    body = {k: v for k, v in bill.items() if k != "version"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _flat(tree: dict[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for k, v in tree.items():
        if isinstance(v, dict):
            yield from _flat(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def store_bills(conn: psycopg.Connection[Any], run_id: int, bills: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Insert the bills whose content is new (version 1) or changed (previous version + 1, the old one superseded),
    with their lines, determinants and outbox rows. Returns counts: new, revised, unchanged.

    The bills' ``version`` field is set here. Call inside the block's transaction.
    """
    counts = {"new": 0, "revised": 0, "unchanged": 0}
    if not bills:
        return counts
    ids = [b["bill_id"] for b in bills]
    latest = {
        r[0]: (int(r[1]), str(r[2]))
        for r in conn.execute(
            "SELECT DISTINCT ON (bill_id) bill_id, version, content_hash FROM amiflow.bills WHERE bill_id = ANY(%s)"
            " ORDER BY bill_id, version DESC",
            (ids,),
        ).fetchall()
    }
    fresh: list[tuple[dict[str, Any], str]] = []
    for bill in bills:
        digest = bill_hash(bill)
        prev = latest.get(bill["bill_id"])
        if prev is not None and prev[1] == digest:
            bill["version"] = prev[0]
            counts["unchanged"] += 1
            continue
        bill["version"] = 1 if prev is None else prev[0] + 1
        counts["new" if prev is None else "revised"] += 1
        fresh.append((bill, digest))
    if not fresh:
        return counts
    superseded = [b["bill_id"] for b, _ in fresh if b["version"] > 1]
    if superseded:
        conn.execute(
            "UPDATE amiflow.bills SET status = 'superseded' WHERE bill_id = ANY(%s) AND status = 'issued'",
            (superseded,),
        )
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO amiflow.bills (bill_id, version, run_id, meter, account, period_start, period_end, tariff_id,"
            " tariff_version, total, currency, estimated_share, content_hash, body)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            [
                (
                    b["bill_id"],
                    b["version"],
                    run_id,
                    b["meters"][0],
                    b["account"],
                    b["period"]["start"],
                    b["period"]["end"],
                    b["tariff"]["id"],
                    b["tariff"]["version"],
                    Decimal(b["total"]),
                    b["currency"],
                    b["estimated_share"],
                    digest,
                    Jsonb(b),
                )
                for b, digest in fresh
            ],
            returning=True,
        )
        pks: list[int] = []
        while True:
            row = cur.fetchone()
            assert row is not None
            pks.append(int(row[0]))
            if not cur.nextset():
                break
    with conn.cursor() as cur:
        with cur.copy(
            "COPY amiflow.bill_lines (bill, line_no, code, description, quantity, unit, rate, amount) FROM STDIN"
        ) as copy:
            for pk, (b, _) in zip(pks, fresh, strict=True):
                for n, line in enumerate(b["lines"]):
                    copy.write_row((pk, n, line["code"], line["description"], line["quantity"], line["unit"],
                                    line["rate"], line["amount"]))  # fmt: skip
        with cur.copy("COPY amiflow.bill_determinants (bill, name, value) FROM STDIN") as copy:
            for pk, (b, _) in zip(pks, fresh, strict=True):
                for name, value in _flat(b["determinants"]):
                    copy.write_row((pk, name, str(value)))
    for b, _ in fresh:
        enqueue(
            conn,
            kind="bill",
            idempotency_key=f"bill:{b['bill_id']}:v{b['version']}",
            payload=b,
            account=b["account"],
        )
    return counts
