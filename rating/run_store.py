"""The bookkeeping of VEE and billing runs in the database: meter selection, runs and their block plans, skips.

A run (``amiflow.bill_runs``) stores its plan of blocks (``amiflow.bill_run_blocks``) so that a resumed run skips
exactly the blocks committed before a crash. A block's inputs are read by rating.block_input; its results are
written by rating.vee_store and rating.bill_store. Everything a block writes (VEE pre/post intervals and results,
bills, lines, determinants, outbox rows, skipped meters, the block's 'done' mark) is written by the caller inside ONE
transaction; these functions only run statements on the connection they are given.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from amiflow.errors import StorageError

__all__ = [
    "BlockPlan",
    "DueMeter",
    "block_summaries",
    "claim_block",
    "cycle_of",
    "finish_run",
    "mark_block_done",
    "open_run",
    "plan_blocks",
    "select_meters",
    "store_skips",
]


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
