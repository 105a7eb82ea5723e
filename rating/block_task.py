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
import numpy.typing as npt
import psycopg

from amiflow.errors import RatingError, StorageError
from rating.bill import default_bill_id
from rating.bill_store import store_bills
from rating.block_input import BlockData, load_block, prior_peaks
from rating.run_store import BlockPlan, claim_block, mark_block_done, store_skips
from rating.service_store import services_in, split_services
from rating.tariff_change import TariffPart, rate_parts, split_bill_json, tariff_parts
from rating.tariff_store import tariff_versions
from rating.time_axis import build_axis
from rating.vee import VeeConfig, VeeResult, run_vee
from rating.vee_store import store_vee

__all__ = ["BlockTask", "run_block"]

# per process: compiled once per tariff, period and set of stored versions (versions are immutable once imported)
_TARIFFS: dict[tuple[str, date, tuple[int, ...]], tuple[TariffPart, ...] | str] = {}


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
class BillRow:
    """One bill of a block: the meter's row, the account, its service days [start, end) (None = whole period)."""

    row: int
    account: str | None
    start: date | None = None
    end: date | None = None


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


def _bill_rows(
    conn: psycopg.Connection[Any], task: BlockTask, data: BlockData, rows: list[int]
) -> tuple[list[BillRow], list[tuple[str, str, str | None]]]:
    """The bills of the billable meter rows: one per service period in the month (move-in / move-out), or one for
    the whole month to the meter's account when it has no service periods; skips for vacant or overlapping ones."""
    services = services_in(conn, [int(data.meter_ids[i]) for i in rows], task.period, _next_month(task.period))
    out: list[BillRow] = []
    skips: list[tuple[str, str, str | None]] = []
    for i in rows:
        found = services.get(int(data.meter_ids[i]))
        if found is None:
            out.append(BillRow(i, data.accounts[i]))
            continue
        spans = split_services(found, task.period, _next_month(task.period))
        if isinstance(spans, str):
            skips.append((data.meters[i], spans, "no account is served in the period" if spans == "no_service"
                          else "two service periods share a day; correct amiflow.service_periods"))  # fmt: skip
        else:
            out += [BillRow(i, account, start, end) for account, start, end in spans]
    return out, skips


def _dates(values: list[date | None]) -> npt.NDArray[np.datetime64]:
    return np.array([np.datetime64(v, "D") if v is not None else np.datetime64("NaT", "D") for v in values])


def _bills(
    task: BlockTask, data: BlockData, vee: VeeResult, bill_rows: list[BillRow], parts: tuple[TariffPart, ...],
    conn: Any,
) -> list[dict[str, Any]]:  # fmt: skip
    rows = [b.row for b in bill_rows]
    meters = [data.meters[i] for i in rows]
    imp = vee.post[rows]
    exp = None
    if data.export_wh is not None:
        exp = np.clip(np.nan_to_num(data.export_wh[rows]), 0.0, None)
    ratcheted = [d for p in parts for d in p.tariff.demand if d.ratchet_by_month is not None]
    codes = sorted({d.code for d in ratcheted})
    months = max([d.ratchet_months for d in ratcheted] or [0])
    served = [b.account if b.start is not None else None for b in bill_rows]  # service periods: their own peaks
    prior = prior_peaks(conn, meters, codes, task.period, months, served) if codes else None
    blocks = rate_parts(
        parts, vee.ts, imp, exp, tz=task.plan.timezone, period_start=task.period, period_end=_next_month(task.period),
        active_from=_dates([b.start for b in bill_rows]), active_to=_dates([b.end for b in bill_rows]),
        prior_peak_w=prior,
        axis=build_axis(parts[0].tariff, vee.ts, task.plan.timezone) if len(parts) == 1 else None,
    )  # fmt: skip
    share = vee.estimated_share
    out = []
    for k, b in enumerate(bill_rows):
        bill = split_bill_json(
            blocks, k, meter=data.meters[b.row], account=b.account, estimated_share=float(share[b.row]),
            vee=vee.summary(b.row),
        )  # fmt: skip
        start, end = date.fromisoformat(bill["period"]["start"]), date.fromisoformat(bill["period"]["end"])
        bill["bill_id"] = default_bill_id(data.meters[b.row], start, end)
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
    tariff: tuple[TariffPart, ...] | str | None = None
    if task.kind == "bill":
        tariff = "no_tariff" if plan.tariff is None else _tariff(conn, plan.tariff, task.period)
    with_export = isinstance(tariff, tuple) and any(p.tariff.export_mode != "none" for p in tariff)
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
            bill_rows, vacant = _bill_rows(conn, task, data, rows)
            skips += vacant
            if bill_rows:
                try:
                    bills = _bills(task, data, vee, bill_rows, tariff, conn)
                except RatingError as exc:
                    skips += [(data.meters[b.row], "rating_error", str(exc)) for b in bill_rows]
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
