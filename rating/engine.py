"""The vectorized rating engine: a block of meters on one tariff and one time zone -> determinants and bill lines.

Pure (no I/O, no clock, no logging). The hot path is numpy over the (meters x intervals) matrices; there is no Python
loop per meter or per interval. The only full passes over the matrix are: one min() (NaN / negative check) here, and
the charges' passes (rating.charges). Local time comes from the block's time axis (rating.time_axis); the line
columns and their integer money from rating.lines.

Missing values: ``nan="reject"`` (default) raises RatingError when an active interval is NaN (run VEE first);
``nan="zero"`` bills it as 0 and counts it in the determinant ``missing_intervals``. Negative import is rejected
(export belongs in ``export_wh``). Intervals outside a meter's active days are ignored whatever they hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from amiflow.errors import RatingError
from rating.charges import demand_lines, demand_peaks, energy_lines, export_lines, fixed_minimum_tax_lines
from rating.compile import CompiledTariff
from rating.lines import LineSpec, LineTable
from rating.local_time import local_midnight_ts
from rating.money import IntArray
from rating.time_axis import TimeAxis, build_axis

__all__ = ["RatedBlock", "rate_block", "rate_part"]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True, slots=True)
class RatedBlock:
    """Engine output for M meters: quantities (thousandths of the unit) and amounts (minor units) per line."""

    tariff: CompiledTariff
    period_start: date
    period_end: date  # exclusive
    start_utc: datetime
    end_utc: datetime
    period_days: int
    tz: str
    active_start_day: I64  # [M] first active local day (days since 1970-01-01)
    active_end_day: I64  # [M] exclusive
    days: I64  # [M] billed days (active days within the period)
    lines: tuple[LineSpec, ...]
    quantity_milli: I64  # [M, L]
    amount_minor: IntArray  # [M, L] int64 (object of Python ints if int64 could overflow)
    total_minor: IntArray  # [M]
    determinants: dict[str, I64] = field(default_factory=dict)  # name -> [M], thousandths (kWh, kW) or counts
    part_start: date | None = None  # a part of a period split at a tariff change (rate_part); None = whole period
    part_end: date | None = None  # exclusive


def _bounds(
    tariff: CompiledTariff, axis: TimeAxis, start: date, end: date, part: tuple[date, date]
) -> tuple[slice, datetime, datetime, ZoneInfo]:
    zone = ZoneInfo(axis.tz)
    if end <= start:
        raise RatingError(f"empty bill period {start}..{end}")
    if not start <= part[0] < part[1] <= end:
        raise RatingError(f"part {part[0]}..{part[1]} is not a non-empty part of the period {start}..{end}")
    if not tariff.spec.covers(*part):
        what = "the whole period" if part == (start, end) else "the part"
        raise RatingError(
            f"tariff {tariff.spec.id} v{tariff.spec.version} is not effective for {what} {part[0]}..{part[1]}"
        )
    s_ts, e_ts = local_midnight_ts(start, zone), local_midnight_ts(end, zone)
    lo, hi = np.searchsorted(axis.ts, [s_ts, e_ts], side="right")
    expected = (e_ts - s_ts) // axis.step_s
    if hi - lo != expected:
        raise RatingError(
            f"usage covers {hi - lo} of the {expected} intervals of {start}..{end} ({axis.tz}); "
            "give every interval of the period (NaN where missing)"
        )
    return slice(int(lo), int(hi)), datetime.fromtimestamp(s_ts, UTC), datetime.fromtimestamp(e_ts, UTC), zone


def rate_block(
    tariff: CompiledTariff,
    ts: npt.ArrayLike,
    import_wh: npt.ArrayLike,
    export_wh: npt.ArrayLike | None = None,
    *,
    tz: str,
    period_start: date,
    period_end: date,
    active_from: npt.ArrayLike | None = None,
    active_to: npt.ArrayLike | None = None,
    prior_peak_w: Mapping[str, npt.ArrayLike] | None = None,
    nan: Literal["reject", "zero"] = "reject",
    axis: TimeAxis | None = None,
) -> RatedBlock:
    """Rate M meters of one tariff and time zone for the local-date period [period_start, period_end).

    ``import_wh`` / ``export_wh``: float (M, T) energy per interval in Wh (the reader's base unit), columns ending at
    ``ts`` (T, UTC epoch s, uniform 15-min step); only the period's intervals are used (start_utc < ts <= end_utc).
    ``active_from`` / ``active_to``: per-meter local dates (datetime64[D] or date; ``active_to`` exclusive) for
    move-in/move-out; fixed and minimum charges and monthly tier limits are prorated by active days / period days.
    ``prior_peak_w``: per ratcheted demand code, (M, N) monthly peaks of the previous months in W (NaN unknown,
    most recent last). ``axis``: reuse :func:`build_axis` output across blocks with the same ``ts`` and ``tz``.
    """
    return rate_part(
        tariff, ts, import_wh, export_wh, tz=tz, period_start=period_start, period_end=period_end,
        active_from=active_from, active_to=active_to, prior_peak_w=prior_peak_w, nan=nan, axis=axis,
    )  # fmt: skip


def rate_part(
    tariff: CompiledTariff,
    ts: npt.ArrayLike,
    import_wh: npt.ArrayLike,
    export_wh: npt.ArrayLike | None = None,
    *,
    tz: str,
    period_start: date,
    period_end: date,
    part_start: date | None = None,
    part_end: date | None = None,
    active_from: npt.ArrayLike | None = None,
    active_to: npt.ArrayLike | None = None,
    prior_peak_w: Mapping[str, npt.ArrayLike] | None = None,
    nan: Literal["reject", "zero"] = "reject",
    axis: TimeAxis | None = None,
) -> RatedBlock:
    """:func:`rate_block` for the part [part_start, part_end) of the bill period in which ``tariff`` is in effect.

    The part is rated as the meters' active days within it: its own intervals, tier bounds, fixed and minimum
    charges prorated by its days / period days, and demand charges on the part's own peak prorated by its days /
    the meter's active days in the period (so the parts of a split period add up to one monthly demand charge).
    Without a part (or with the whole period) it is exactly :func:`rate_block`.
    """
    axis = axis if axis is not None else build_axis(tariff, ts, tz)
    if axis.tz != tz:
        raise RatingError(f"time axis is for {axis.tz}, not {tz}")
    part = (part_start or period_start, part_end or period_end)
    cols, start_utc, end_utc, _ = _bounds(tariff, axis, period_start, period_end, part)
    imp = np.asarray(import_wh, dtype=np.float64)
    if imp.ndim != 2 or imp.shape[1] != len(axis.ts):
        raise RatingError(f"import_wh must be (meters, {len(axis.ts)}), got {imp.shape}")
    if tariff.usage_scale != 1.0:  # a MWh, Wh or m3 tariff: usage in thousandths of its unit, as Wh are of kWh
        imp = imp * tariff.usage_scale
    m = imp.shape[0]
    day = axis.day[cols]
    d0, d1 = (period_start - _EPOCH).days, (period_end - _EPOCH).days
    p0, p1 = (part[0] - _EPOCH).days, (part[1] - _EPOCH).days
    t0 = np.maximum(_days(active_from, m, d0), d0)
    t1 = np.minimum(_days(active_to, m, d1), d1)
    a0, a1 = np.maximum(t0, p0), np.minimum(t1, p1)
    days = np.maximum(a1 - a0, 0)
    share = None if part == (period_start, period_end) else (days, np.maximum(t1 - t0, 0))
    partial = bool(np.any(days != d1 - d0))
    mask = (day[None, :] >= a0[:, None]) & (day[None, :] < a1[:, None]) if partial else None
    x, missing = _prepare(imp[:, cols], mask, "import_wh", nan)
    det: dict[str, I64] = {"days": days * 1000, "missing_intervals": missing}
    lines = LineTable(tariff)
    energy_lines(lines, det, tariff, axis, cols, x, days, d1 - d0)
    for d in tariff.demand:
        prior = None if prior_peak_w is None or d.code not in prior_peak_w else np.asarray(prior_peak_w[d.code], float)
        peaks = demand_peaks(x, axis, cols, d)
        demand_lines(lines, det, peaks, d, prior, first_month=period_start.month - 1, share=share)
    if export_wh is not None:
        ex = np.asarray(export_wh, dtype=np.float64)
        if ex.shape != imp.shape:
            raise RatingError(f"export_wh must have the shape of import_wh {imp.shape}, got {ex.shape}")
        export_lines(lines, det, tariff, axis, cols, _prepare(ex[:, cols], mask, "export_wh", nan)[0])
    fixed_minimum_tax_lines(lines, tariff, days, d1 - d0)
    amounts = lines.amounts(m)
    total = amounts.sum(axis=1) if amounts.shape[1] else np.zeros(m, dtype=np.int64)
    qty = lines.quantities(m)
    return RatedBlock(
        tariff, period_start, period_end, start_utc, end_utc, d1 - d0, tz, a0, np.maximum(a1, a0), days,
        tuple(lines.specs), qty, amounts, total, det, None if share is None else part[0],
        None if share is None else part[1],
    )  # fmt: skip


def _days(values: npt.ArrayLike | None, m: int, default: int) -> I64:
    """Per-meter dates (datetime64, date, ISO strings; None/NaT = the period bound) as day numbers, vectorized."""
    if values is None:
        return np.full(m, default, dtype=np.int64)
    try:
        arr = np.asarray(values, dtype="datetime64[D]")
    except (TypeError, ValueError):
        raise RatingError("active_from/active_to must be dates (datetime64[D], date or ISO strings)") from None
    if arr.shape != (m,):
        raise RatingError(f"active_from/active_to need one date per meter ({m}), got shape {arr.shape}")
    return np.where(np.isnat(arr), default, arr.astype(np.int64))


def _prepare(x: F64, mask: npt.NDArray[np.bool_] | None, what: str, nan: str) -> tuple[F64, I64]:
    if mask is not None:
        x = np.where(mask, x, 0.0)
    return _check_values(x, what, nan)


def _check_values(x: F64, what: str, nan: str) -> tuple[F64, I64]:
    low = float(np.min(x)) if x.size else 0.0
    missing = np.zeros(x.shape[0], dtype=np.int64)
    if np.isnan(low):
        bad = np.isnan(x)
        missing = bad.sum(axis=1)
        if nan == "reject":
            row = int(np.flatnonzero(missing)[0])
            raise RatingError(
                f"{what}: {int(missing.sum())} missing (NaN) intervals, first in meter row {row}; "
                "run VEE first or rate with nan='zero'"
            )
        x = np.where(bad, 0.0, x)
        low = float(np.min(x))
    if low < 0:
        raise RatingError(f"{what}: negative energy ({low} Wh); pass exported energy as export_wh")
    return x, missing
