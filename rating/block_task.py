"""The per-block step of a billing (or VEE) run, as a picklable task: read -> VEE -> rate -> write in one transaction.

``run_block(task)`` is what a local worker process or a Dask worker executes: it keeps one database connection per
worker thread (opened on first use, reopened after a failure), skips the block when an earlier (crashed) run already
committed it, and returns the block's summary with the time spent per phase. The three stages are public so that
one process can overlap them across blocks (rating.billing_run): :func:`read_block` (database only),
:func:`compute_block` (VEE and rating, no I/O) and :func:`write_block` (ONE transaction: the block's bills, lines,
determinants, outbox rows, VEE pre/post intervals, skipped meters and its 'done' mark commit together or not at all).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import psycopg

from amiflow.errors import RatingError, StorageError
from rating.bill_store import store_bills
from rating.block_input import IMPORT_OBIS, BlockData, load_block
from rating.block_rating import bill_rows, rate_bills, summarize, triage
from rating.run_store import BlockPlan, claim_block, mark_block_done, store_skips
from rating.tariff_change import TariffPart, tariff_parts
from rating.tariff_store import tariff_versions
from rating.vee import VeeConfig, VeeResult, run_vee
from rating.vee_store import store_vee

__all__ = ["BlockInput", "BlockOutput", "BlockTask", "compute_block", "read_block", "run_block", "write_block"]

# per process: compiled once per tariff, period and set of stored versions (versions are immutable once imported)
_TARIFFS: dict[tuple[str, date, tuple[int, ...]], tuple[TariffPart, ...] | str] = {}
_LOCAL = threading.local()  # a worker thread's own connection: (url, connection)

Skip = tuple[str, str, str | None]


@dataclass(frozen=True, slots=True)
class BlockTask:
    """Everything a worker needs (picklable): where the database is, which run and block, the parameters."""

    url: str
    run_id: int
    kind: str  # "bill" | "vee"
    plan: BlockPlan
    period: date
    history_weeks: int = 4
    max_estimated_share: float = 0.5
    vee: VeeConfig = field(default_factory=VeeConfig)
    interval_s: int = 900


@dataclass(frozen=True, slots=True)
class BlockInput:
    """What :func:`read_block` read: the tariff parts in effect (or the reason none rates) and the block's data."""

    tariff: tuple[TariffPart, ...] | str | None
    data: BlockData
    seconds: float


@dataclass(frozen=True, slots=True)
class BlockOutput:
    """What :func:`compute_block` made: VEE results, bills, skipped meters, the time of each stage so far."""

    data: BlockData
    vee: VeeResult
    bills: list[dict[str, Any]]
    skips: list[Skip]
    seconds: dict[str, float]


def _next_month(d: date) -> date:
    return date(d.year + d.month // 12, d.month % 12 + 1, 1)


def _tariff(conn: psycopg.Connection[Any], tariff_id: str, period: date) -> tuple[TariffPart, ...] | str:
    """The compiled versions in effect over the month (split where one changes), or the skip reason."""
    versions = tariff_versions(conn, tariff_id)
    key = (tariff_id, period, tuple(v.version for v in versions))
    if key not in _TARIFFS:
        if not versions:
            _TARIFFS[key] = "unknown_tariff"
        else:
            try:
                _TARIFFS[key] = tuple(tariff_parts(versions, period, _next_month(period)))
            except RatingError:
                _TARIFFS[key] = "tariff_not_effective"
    return _TARIFFS[key]


def _block_done(conn: psycopg.Connection[Any], task: BlockTask) -> bool:
    row = conn.execute(
        "SELECT state FROM amiflow.bill_run_blocks WHERE run_id = %s AND block_no = %s",
        (task.run_id, task.plan.block_no),
    ).fetchone()
    return row is not None and row[0] == "done"


def read_block(conn: psycopg.Connection[Any], task: BlockTask) -> BlockInput | None:
    """Read the block's inputs (None when the block is committed already)."""
    if _block_done(conn, task):
        return None
    t0 = time.perf_counter()
    plan = task.plan
    tariff: tuple[TariffPart, ...] | str | None = None
    if task.kind == "bill":
        tariff = "no_tariff" if plan.tariff is None else _tariff(conn, plan.tariff, task.period)
    parts = tariff if isinstance(tariff, tuple) else ()
    ratcheted = [d for p in parts for d in p.tariff.demand if d.ratchet_by_month is not None]
    data = load_block(
        conn, plan.meters, period=task.period, tz=plan.timezone, history_weeks=task.history_weeks,
        with_export=any(p.tariff.export_mode != "none" for p in parts), interval_s=task.interval_s,
        peak_codes=sorted({d.code for d in ratcheted}), peak_months=max([d.ratchet_months for d in ratcheted] or [0]),
        channel=parts[0].tariff.channel if parts else IMPORT_OBIS,
    )  # fmt: skip
    return BlockInput(tariff, data, time.perf_counter() - t0)


def compute_block(task: BlockTask, inp: BlockInput) -> BlockOutput:
    """VEE, and for a billing run the bills of the billable meters (no I/O)."""
    t1 = time.perf_counter()
    data, tariff = inp.data, inp.tariff
    vee = run_vee(data.vee, task.vee)
    t2 = time.perf_counter()
    bills: list[dict[str, Any]] = []
    skips: list[Skip] = []
    if task.kind == "bill":
        if isinstance(tariff, str):
            skips = [(m, tariff, task.plan.tariff) for m in task.plan.meters]
        else:
            assert tariff is not None
            rows, skips = triage(data, vee, task.max_estimated_share)
            billed, vacant = bill_rows(data, rows, task.period, _next_month(task.period))
            skips += vacant
            if billed:
                try:
                    bills = rate_bills(task.plan.timezone, task.period, _next_month(task.period), data, vee, billed,
                                       tariff)  # fmt: skip
                except RatingError as exc:
                    skips += [(data.meters[b.row], "rating_error", str(exc)) for b in billed]
    seconds = {"read": inp.seconds, "vee": t2 - t1, "rate": time.perf_counter() - t2}
    return BlockOutput(data, vee, bills, skips, seconds)


def write_block(conn: psycopg.Connection[Any], task: BlockTask, out: BlockOutput) -> dict[str, Any]:
    """Store the block's results in ONE transaction and mark it done; the summary (``skipped_block`` True when
    another worker committed the block meanwhile)."""
    plan = task.plan
    t3 = time.perf_counter()
    summary: dict[str, Any] = {"block": plan.block_no, "meters": len(plan.meters), "skipped_block": False}
    with conn.transaction():
        if not claim_block(conn, task.run_id, plan.block_no):
            return {"block": plan.block_no, "skipped_block": True}
        summary["vee_rows"] = store_vee(conn, task.run_id, out.data.meter_ids, out.vee, task.period,
                                        channel_obis=out.data.channel)  # fmt: skip
        summary["bills"] = store_bills(conn, task.run_id, out.bills)
        store_skips(conn, task.run_id, out.skips)
        summary.update(summarize(out.data, out.vee, out.bills, out.skips))
        summary["seconds"] = {**out.seconds, "write": time.perf_counter() - t3}
        mark_block_done(conn, task.run_id, plan.block_no, summary)
    return summary


def _connection(url: str) -> psycopg.Connection[Any]:
    """This thread's connection to ``url`` (a Dask or pool worker keeps one across blocks)."""
    held = getattr(_LOCAL, "conn", None)
    if held is not None and held[0] == url and not held[1].closed and not held[1].broken:
        return held[1]  # type: ignore[no-any-return]
    if held is not None:
        held[1].close()
    try:
        conn = psycopg.connect(url, autocommit=True, application_name="amiflow-billing-worker")
    except psycopg.OperationalError as exc:
        raise StorageError(f"billing worker cannot connect: {str(exc).strip()}") from exc
    _LOCAL.conn = (url, conn)
    return conn


def run_block(task: BlockTask) -> dict[str, Any]:
    """Execute one block; returns its summary (``skipped_block`` True when it had been committed already)."""
    conn = _connection(task.url)
    try:
        inp = read_block(conn, task)
        if inp is None:
            return {"block": task.plan.block_no, "skipped_block": True}
        return write_block(conn, task, compute_block(task, inp))
    except psycopg.Error as exc:
        if conn.broken:
            conn.close()
        raise StorageError(f"billing block {task.plan.block_no} failed: {str(exc).strip()}") from exc
