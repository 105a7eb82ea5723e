"""The per-block step of a billing (or VEE) run, as a picklable task: read -> VEE -> rate -> write in one transaction.

``run_block(task)`` is what a local worker process or a Dask worker executes. It opens its own connection, skips the
block when an earlier (crashed) run already committed it, and returns the block's summary with the time spent per
phase. Writing is ONE transaction: the block's bills, lines, determinants, outbox rows, VEE pre/post intervals,
skipped meters and its 'done' mark commit together or not at all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

import numpy as np
import psycopg

from amiflow.errors import RatingError, StorageError
from rating.bill import bill_json, default_bill_id
from rating.bill_store import store_bills
from rating.block_input import BlockData, load_block, prior_peaks
from rating.compile import CompiledTariff, compile_tariff
from rating.engine import rate_block
from rating.run_store import BlockPlan, claim_block, mark_block_done, store_skips
from rating.tariff import select_version
from rating.tariff_store import tariff_versions
from rating.time_axis import build_axis
from rating.vee import VeeConfig, VeeResult, run_vee
from rating.vee_store import store_vee

__all__ = ["BlockTask", "run_block"]

_TARIFFS: dict[tuple[str, date], CompiledTariff | str] = {}  # per process: compiled once per tariff and period


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


def _next_month(d: date) -> date:
    return date(d.year + d.month // 12, d.month % 12 + 1, 1)


def _tariff(conn: psycopg.Connection[Any], tariff_id: str, period: date) -> CompiledTariff | str:
    """The compiled version effective for the month, or the skip reason."""
    key = (tariff_id, period)
    if key not in _TARIFFS:
        versions = tariff_versions(conn, tariff_id)
        if not versions:
            _TARIFFS[key] = "unknown_tariff"
        else:
            try:
                _TARIFFS[key] = compile_tariff(select_version(versions, period, _next_month(period)))
            except RatingError:
                _TARIFFS[key] = "tariff_not_effective"
    return _TARIFFS[key]


def _bills(
    task: BlockTask, data: BlockData, vee: VeeResult, rows: list[int], tariff: CompiledTariff, conn: Any
) -> list[dict[str, Any]]:
    meters = [data.meters[i] for i in rows]
    imp = vee.post[rows]
    exp = None
    if data.export_wh is not None:
        exp = np.clip(np.nan_to_num(data.export_wh[rows]), 0.0, None)
    ratchets = [d.code for d in tariff.demand if d.ratchet_pct]
    months = max([d.ratchet_months for d in tariff.demand if d.ratchet_pct] or [0])
    prior = prior_peaks(conn, meters, ratchets, task.period, months) if ratchets else None
    block = rate_block(
        tariff,
        vee.ts,
        imp,
        exp,
        tz=task.plan.timezone,
        period_start=task.period,
        period_end=_next_month(task.period),
        prior_peak_w=prior,
        axis=build_axis(tariff, vee.ts, task.plan.timezone),
    )
    share = vee.estimated_share
    out = []
    for k, i in enumerate(rows):
        bill = bill_json(
            block,
            k,
            meter=data.meters[i],
            account=data.accounts[i],
            estimated_share=float(share[i]),
            vee=vee.summary(i),
        )
        start, end = date.fromisoformat(bill["period"]["start"]), date.fromisoformat(bill["period"]["end"])
        bill["bill_id"] = default_bill_id(data.meters[i], start, end)
        out.append(bill)
    return out


def _triage(task: BlockTask, data: BlockData, vee: VeeResult) -> tuple[list[int], list[tuple[str, str, str | None]]]:
    """Rows to bill, and (meter, reason, detail) of the rows not billed."""
    rows: list[int] = []
    skips: list[tuple[str, str, str | None]] = []
    share = vee.estimated_share
    for i, name in enumerate(data.meters):
        if data.meter_ids[i] < 0:
            skips.append((name, "unknown_meter", "no longer registered"))
        elif vee.hold[i] == "no_data":
            skips.append((name, "no_data", "no usable reading in the period or the history read"))
        elif vee.hold[i] is not None:
            skips.append((name, f"vee_hold:{vee.hold[i]}", f"VEE rule {vee.hold[i]} fired; review the meter"))
        elif share[i] > task.max_estimated_share:
            skips.append((name, "too_much_estimated", f"{share[i]:.1%} of intervals estimated"))
        else:
            rows.append(i)
    return rows, skips


def _totals(bills: list[dict[str, Any]]) -> dict[str, str]:
    sums: dict[str, Decimal] = {}
    for b in bills:
        sums[b["currency"]] = sums.get(b["currency"], Decimal(0)) + Decimal(b["total"])
    return {k: str(v) for k, v in sums.items()}


def _block_done(conn: psycopg.Connection[Any], task: BlockTask) -> bool:
    row = conn.execute(
        "SELECT state FROM amiflow.bill_run_blocks WHERE run_id = %s AND block_no = %s",
        (task.run_id, task.plan.block_no),
    ).fetchone()
    return row is not None and row[0] == "done"


def run_block(task: BlockTask) -> dict[str, Any]:
    """Execute one block; returns its summary (``skipped_block`` True when it had been committed already)."""
    try:
        conn = psycopg.connect(task.url, autocommit=True)
    except psycopg.OperationalError as exc:
        raise StorageError(f"billing worker cannot connect: {str(exc).strip()}") from exc
    try:
        return _run(conn, task)
    except psycopg.Error as exc:
        raise StorageError(f"billing block {task.plan.block_no} failed: {str(exc).strip()}") from exc
    finally:
        conn.close()


def _run(conn: psycopg.Connection[Any], task: BlockTask) -> dict[str, Any]:
    plan = task.plan
    if _block_done(conn, task):
        return {"block": plan.block_no, "skipped_block": True}
    t0 = time.perf_counter()
    tariff: CompiledTariff | str | None = None
    if task.kind == "bill":
        tariff = "no_tariff" if plan.tariff is None else _tariff(conn, plan.tariff, task.period)
    with_export = isinstance(tariff, CompiledTariff) and tariff.export_mode != "none"
    data = load_block(
        conn, plan.meters, period=task.period, tz=plan.timezone, history_weeks=task.history_weeks,
        with_export=with_export, interval_s=task.interval_s,
    )  # fmt: skip
    t1 = time.perf_counter()
    vee = run_vee(data.vee, task.vee)
    t2 = time.perf_counter()
    bills: list[dict[str, Any]] = []
    skips: list[tuple[str, str, str | None]] = []
    if task.kind == "bill":
        if isinstance(tariff, str):
            skips = [(m, tariff, plan.tariff) for m in plan.meters]
        else:
            assert tariff is not None
            rows, skips = _triage(task, data, vee)
            if rows:
                try:
                    bills = _bills(task, data, vee, rows, tariff, conn)
                except RatingError as exc:
                    skips += [(data.meters[i], "rating_error", str(exc)) for i in rows]
    t3 = time.perf_counter()
    summary: dict[str, Any] = {"block": plan.block_no, "meters": len(plan.meters), "skipped_block": False}
    with conn.transaction():
        if not claim_block(conn, task.run_id, plan.block_no):
            return {"block": plan.block_no, "skipped_block": True}
        summary["vee_rows"] = store_vee(conn, task.run_id, data.meter_ids, vee, task.period)
        summary["bills"] = store_bills(conn, task.run_id, bills)
        store_skips(conn, task.run_id, skips)
        summary.update(_block_summary(data, vee, bills, skips))
        t4 = time.perf_counter()
        summary["seconds"] = {"read": t1 - t0, "vee": t2 - t1, "rate": t3 - t2, "write": t4 - t3}
        mark_block_done(conn, task.run_id, plan.block_no, summary)
    return summary


def _block_summary(
    data: BlockData, vee: VeeResult, bills: list[dict[str, Any]], skips: list[tuple[str, str, str | None]]
) -> dict[str, Any]:
    billed = {b["meters"][0] for b in bills}
    rows = [i for i, m in enumerate(data.meters) if m in billed]
    reasons: dict[str, int] = {}
    for _, reason, _ in skips:
        reasons[reason] = reasons.get(reason, 0) + 1
    return {
        "billed": len(bills),
        "skipped": reasons,
        "intervals": int(vee.pre.shape[1]) * len(rows),
        "estimated_intervals": int(vee.estimated[rows].sum()) if rows else 0,
        "validated": len(data.meters),
        "estimated_all": int(vee.estimated.sum()),
        "intervals_all": int(vee.pre.size),
        "holds": sum(1 for h in vee.hold if h),
        "totals": _totals(bills),
    }
