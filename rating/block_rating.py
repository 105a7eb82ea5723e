"""Rating one block of a billing run, after VEE (pure: no I/O): which meters are billed and why others are not, one
bill row per account served in the month (service periods, move-in / move-out), the bills, and the block's summary.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt

from rating.bill import default_bill_id
from rating.block_input import BlockData, peak_grid
from rating.service_store import split_services
from rating.tariff_change import TariffPart, rate_parts, split_bill_json
from rating.time_axis import build_axis
from rating.vee import VeeResult

__all__ = ["BillRow", "bill_rows", "rate_bills", "summarize", "triage"]

Skip = tuple[str, str, str | None]


@dataclass(frozen=True, slots=True)
class BillRow:
    """One bill of a block: the meter's row, the account, its service days [start, end) (None = whole period)."""

    row: int
    account: str | None
    start: date | None = None
    end: date | None = None


def triage(data: BlockData, vee: VeeResult, max_estimated_share: float) -> tuple[list[int], list[Skip]]:
    """Rows to bill, and (meter, reason, detail) of the rows not billed."""
    rows: list[int] = []
    skips: list[Skip] = []
    share = vee.estimated_share
    for i, name in enumerate(data.meters):
        if data.meter_ids[i] < 0:
            skips.append((name, "unknown_meter", "no longer registered"))
        elif vee.hold[i] == "no_data":
            skips.append((name, "no_data", "no usable reading in the period or the history read"))
        elif vee.hold[i] is not None:
            skips.append((name, f"vee_hold:{vee.hold[i]}", f"VEE rule {vee.hold[i]} fired; review the meter"))
        elif share[i] > max_estimated_share:
            skips.append((name, "too_much_estimated", f"{share[i]:.1%} of intervals estimated"))
        else:
            rows.append(i)
    return rows, skips


def bill_rows(data: BlockData, rows: list[int], start: date, end: date) -> tuple[list[BillRow], list[Skip]]:
    """The bills of the billable meter rows: one per service period in [start, end) (move-in / move-out), or one for
    the whole month to the meter's account when it has no service periods; skips for vacant or overlapping ones."""
    out: list[BillRow] = []
    skips: list[Skip] = []
    for i in rows:
        found = data.services.get(int(data.meter_ids[i]))
        if found is None:
            out.append(BillRow(i, data.accounts[i]))
            continue
        spans = split_services(found, start, end)
        if isinstance(spans, str):
            skips.append((data.meters[i], spans, "no account is served in the period" if spans == "no_service"
                          else "two service periods share a day; correct amiflow.service_periods"))  # fmt: skip
        else:
            out += [BillRow(i, account, s, e) for account, s, e in spans]
    return out, skips


def _dates(values: list[date | None]) -> npt.NDArray[np.datetime64]:
    return np.array([np.datetime64(v, "D") if v is not None else np.datetime64("NaT", "D") for v in values])


def rate_bills(
    tz: str, start: date, end: date, data: BlockData, vee: VeeResult, rows: list[BillRow],
    parts: tuple[TariffPart, ...],
) -> list[dict[str, Any]]:  # fmt: skip
    """Rate the post-VEE intervals of the bill rows with the tariff parts; one bill (JSON shape) per row."""
    meters = [data.meters[b.row] for b in rows]
    imp = vee.post[[b.row for b in rows]]
    exp = None
    if data.export_wh is not None:
        exp = np.clip(np.nan_to_num(data.export_wh[[b.row for b in rows]]), 0.0, None)
    ratcheted = [d for p in parts for d in p.tariff.demand if d.ratchet_by_month is not None]
    codes = sorted({d.code for d in ratcheted})
    months = max([d.ratchet_months for d in ratcheted] or [0])
    served = [b.account if b.start is not None else None for b in rows]  # service periods: their own peaks
    prior = peak_grid(data.peak_rows, meters, codes, start, months, served) if codes else None
    blocks = rate_parts(
        parts, vee.ts, imp, exp, tz=tz, period_start=start, period_end=end,
        active_from=_dates([b.start for b in rows]), active_to=_dates([b.end for b in rows]), prior_peak_w=prior,
        axis=build_axis(parts[0].tariff, vee.ts, tz) if len(parts) == 1 else None,
    )  # fmt: skip
    share = vee.estimated_share
    out = []
    for k, b in enumerate(rows):
        bill = split_bill_json(
            blocks, k, meter=data.meters[b.row], account=b.account, estimated_share=float(share[b.row]),
            vee=vee.summary(b.row),
        )  # fmt: skip
        first, last = date.fromisoformat(bill["period"]["start"]), date.fromisoformat(bill["period"]["end"])
        bill["bill_id"] = default_bill_id(data.meters[b.row], first, last)
        out.append(bill)
    return out


def _totals(bills: list[dict[str, Any]]) -> dict[str, str]:
    sums: dict[str, Decimal] = {}
    for b in bills:
        sums[b["currency"]] = sums.get(b["currency"], Decimal(0)) + Decimal(b["total"])
    return {k: str(v) for k, v in sums.items()}


def summarize(data: BlockData, vee: VeeResult, bills: list[dict[str, Any]], skips: list[Skip]) -> dict[str, Any]:
    """The block's counts for the run summary (billed, skipped by reason, estimated intervals, totals)."""
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
