"""The vectorized rating engine: a block of meters on one tariff and one time zone -> determinants and bill lines.

Pure (no I/O, no clock, no logging). The hot path is numpy over the (meters x intervals) matrices; there is no Python
loop per meter or per interval. The only full passes over the matrix are: one min() (NaN / negative check), one
``add.reduceat`` over runs of equal TOU period (energy), and per demand charge one ``maximum.reduceat`` (plus one
``add.reduceat`` when its demand interval is 30 or 60 minutes). Tiers use the run sums only: the energy of a tier
inside a run telescopes to ``f(C_end) - f(C_start)`` of the cumulative energy C, so chronological allocation costs no
extra pass.

Time: ``ts`` are interval END instants (UTC epoch seconds, uniform step); an interval is placed in local time by its
START (``ts - step``), so the 15 minutes ending 16:00 belong to hour 15. A day is a local calendar day, so DST days
hold 92 or 100 quarter hours and every hour of the day is still looked up once per interval.

Missing values: ``nan="reject"`` (default) raises RatingError when an active interval is NaN (run VEE first);
``nan="zero"`` bills it as 0 and counts it in the determinant ``missing_intervals``. Negative import is rejected
(export belongs in ``export_wh``). Intervals outside a meter's active days are ignored whatever they hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt

from amiflow.errors import RatingError
from rating.compile import CompiledDemand, CompiledTariff
from rating.money import IntArray, mul_round, round_half_even_div

__all__ = ["LineSpec", "RatedBlock", "TimeAxis", "build_axis", "local_midnight_ts", "rate_block"]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True, slots=True)
class TimeAxis:
    """Local-time facts of each interval of a block (shared by all its meters)."""

    ts: I64  # interval ends, UTC epoch s
    step_s: int
    tz: str
    local_start_s: I64  # interval start as local wall-clock seconds since 1970-01-01
    day: I64  # local day number
    month: npt.NDArray[np.int8]  # 0-11
    hour: npt.NDArray[np.int8]
    day_type: npt.NDArray[np.int8]  # 0 weekday, 1 weekend, 2 holiday


@dataclass(frozen=True, slots=True)
class LineSpec:
    """One column of a RatedBlock: the same line for every meter of the block."""

    code: str
    description: str
    category: str  # energy | demand | export | fixed | minimum | tax
    unit: str  # kWh | kW | month | day | <currency> (tax base)
    rate: Decimal | None
    rate_unit: str


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


def local_midnight_ts(day: date, tz: ZoneInfo) -> int:
    """UTC epoch seconds of local midnight starting ``day``."""
    return int(datetime(day.year, day.month, day.day, tzinfo=tz).timestamp())


def _offsets(start: I64, tz: ZoneInfo) -> I64:
    """UTC offset (s) at each instant: evaluated per UTC day, refined per instant only on days where it changes."""
    days = start // 86400
    uniq, first = np.unique(days, return_index=True)

    def off(s: int) -> int:
        delta = datetime.fromtimestamp(s, tz).utcoffset()
        return int(delta.total_seconds()) if delta is not None else 0

    at_day = np.array([off(int(d) * 86400) for d in uniq] + [off(int(uniq[-1] + 1) * 86400)], dtype=np.int64)
    out = np.repeat(at_day[:-1], np.diff(np.append(first, len(start))))
    for i in np.flatnonzero(at_day[:-1] != at_day[1:]):
        lo = first[i]
        hi = first[i + 1] if i + 1 < len(first) else len(start)
        out[lo:hi] = [off(int(s)) for s in start[lo:hi]]
    return out


def build_axis(tariff: CompiledTariff, ts: npt.ArrayLike, tz: str) -> TimeAxis:
    """Local month, hour, day and day type (holidays of ``tariff``) of each interval ending at ``ts``."""
    ts = np.asarray(ts, dtype=np.int64)
    if ts.ndim != 1 or len(ts) < 2:
        raise RatingError("usage needs at least two intervals")
    steps = np.diff(ts)
    step = int(steps[0])
    if step <= 0 or 3600 % step or not np.all(steps == step):
        raise RatingError("interval timestamps must be ascending with one uniform step dividing an hour")
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise RatingError(f"unknown time zone {tz!r}") from None
    start = ts - step
    local = start + _offsets(start, zone)
    day = local // 86400
    month = (day.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) % 12).astype(np.int8)
    hour = ((local % 86400) // 3600).astype(np.int8)
    day_type = (((day + 3) % 7) >= 5).astype(np.int8)  # 1970-01-01 was a Thursday; Monday = 0
    years = np.unique(day.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970)
    holidays = tariff.holiday_days(int(y) for y in years)
    day_type[np.isin(day, holidays)] = 2
    return TimeAxis(ts, step, tz, local, day, month, hour, day_type)


def _runs(idx: npt.NDArray[Any]) -> tuple[I64, npt.NDArray[Any]]:
    """Start positions of runs of equal values, and each run's value."""
    starts = np.flatnonzero(np.r_[True, idx[1:] != idx[:-1]])
    return starts, idx[starts]


def _group_sum(run_values: F64, run_period: npt.NDArray[Any], n_periods: int) -> F64:
    onehot = np.zeros((len(run_period), n_periods))
    onehot[np.arange(len(run_period)), run_period] = 1.0
    return np.asarray(run_values @ onehot)


class _Lines:
    """Accumulates line columns; money stays integral."""

    def __init__(self, tariff: CompiledTariff) -> None:
        self.t = tariff
        self.specs: list[LineSpec] = []
        self.qty: list[I64] = []
        self.amt: list[IntArray] = []

    def add(self, spec: LineSpec, qty_milli: I64, amount: IntArray) -> None:
        self.specs.append(spec)
        self.qty.append(np.asarray(qty_milli, dtype=np.int64))
        self.amt.append(amount)

    def per_unit(self, spec: LineSpec, qty_milli: I64, rate_scaled: int, sign: int = 1) -> None:
        # qty in 1e-3 units x rate in 1e-scale -> 1e-(3+scale); one rounding to the minor unit
        den = 10 ** (3 + self.t.rate_scale - self.t.minor_units)
        self.add(spec, qty_milli, sign * mul_round(qty_milli, rate_scaled, den))

    def total(self, categories: frozenset[str]) -> IntArray:
        pairs = zip(self.specs, self.amt, strict=True)
        cols = [a for s, a in pairs if s.category in categories or s.code in categories]
        if not cols:
            return np.zeros(len(self.qty[0]), dtype=np.int64) if self.qty else np.zeros(0, np.int64)
        out = cols[0]
        for c in cols[1:]:
            out = out + c
        return out


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


def _tier_energy(run_sum: F64, limits: F64, tariff: CompiledTariff, energy_p: F64, run_p: npt.NDArray[Any]) -> F64:
    """[M, P, K] energy of each TOU period in each block; ``limits`` [M, K-1] per meter."""
    m, n_p = energy_p.shape
    k = tariff.n_tiers
    if k == 1:
        return energy_p[:, :, None]
    lo = np.concatenate([np.zeros((m, 1)), limits], axis=1)
    hi = np.concatenate([limits, np.full((m, 1), np.inf)], axis=1)
    out = np.empty((m, n_p, k))
    if tariff.allocation == "pro_rata":
        total = energy_p.sum(axis=1)
        share = np.divide(energy_p, total[:, None], out=np.zeros_like(energy_p), where=total[:, None] > 0)
        for j in range(k):
            out[:, :, j] = share * (np.clip(total, lo[:, j], hi[:, j]) - lo[:, j])[:, None]
    else:  # chronological: tier energy within a run = f(C_end) - f(C_start), f = clip to the block
        cum = np.cumsum(run_sum, axis=1)
        prev = np.concatenate([np.zeros((m, 1)), cum[:, :-1]], axis=1)
        for j in range(k):
            part = np.clip(cum, lo[:, j : j + 1], hi[:, j : j + 1]) - np.clip(prev, lo[:, j : j + 1], hi[:, j : j + 1])
            out[:, :, j] = _group_sum(part, run_p, n_p)
    return out


def _peaks(x: F64, axis: TimeAxis, cols: slice, d: CompiledDemand) -> F64:
    """[M, P] highest block-average demand (W) of each demand period of ``d``."""
    m = x.shape[0]
    local = axis.local_start_s[cols]
    if d.interval_s == axis.step_s:
        blocks, first = x, np.arange(x.shape[1])
    else:
        # a block is a local clock window; the repeated hour of a fall-back day makes two blocks (offset changes)
        offset = local - (axis.ts[cols] - axis.step_s)
        key = local // d.interval_s
        first = np.flatnonzero(np.r_[True, (key[1:] != key[:-1]) | (offset[1:] != offset[:-1])])
        blocks = np.add.reduceat(x, first, axis=1) if x.shape[1] else x
    month, hour, dt = axis.month[cols][first], axis.hour[cols][first], axis.day_type[cols][first]
    period = d.schedule[dt, month, hour].astype(np.int64)
    period[~d.months[month]] = -1
    starts, run_p = _runs(period)
    # the max of block energy, scaled to W afterwards (max commutes with a positive scale: no extra full pass)
    run_max = (
        np.maximum.reduceat(blocks, starts, axis=1) * (3600.0 / d.interval_s) if blocks.shape[1] else np.zeros((m, 0))
    )
    out = np.zeros((m, len(d.periods)))
    for p in range(len(d.periods)):
        sel = run_p == p
        if sel.any():
            out[:, p] = run_max[:, sel].max(axis=1)
    return out


def _demand_lines(lines: _Lines, det: dict[str, I64], peaks: F64, d: CompiledDemand, prior: F64 | None) -> None:
    peak_w = np.rint(peaks).astype(np.int64)
    billed = peak_w.copy()
    if d.ratchet_pct is not None and prior is not None and prior.size:
        recent = prior[:, -d.ratchet_months :]
        with np.errstate(all="ignore"):
            floor_w = np.where(np.isnan(recent).all(axis=1), 0.0, np.nanmax(np.nan_to_num(recent, nan=-1.0), axis=1))
        ratchet = np.rint(floor_w * float(d.ratchet_pct) / 100.0).astype(np.int64)
        billed[:, 0] = np.maximum(billed[:, 0], ratchet)
    limits = np.r_[0.0, d.limits_w, np.inf]
    for p, name in enumerate(d.periods):
        det[f"peak_kw.{d.code}.{name}"] = peak_w[:, p]
        if d.ratchet_pct is not None:
            det[f"billed_kw.{d.code}.{name}"] = billed[:, p]
        if not d.charged[p]:
            continue
        for j in range(len(limits) - 1):
            qty = np.clip(billed[:, p], limits[j], limits[j + 1]).astype(np.int64) - int(min(limits[j], 2**62))
            qty = np.maximum(qty, 0)
            tier = f" tier {j + 1}" if len(limits) > 2 else ""
            spec = LineSpec(f"{d.code}.{name}" + (f".t{j + 1}" if len(limits) > 2 else ""),
                            f"{d.description} ({name}{tier})", "demand", "kW", d.rate_text[p][j], "per kW")  # fmt: skip
            lines.per_unit(spec, qty, int(d.rates[p, j]))


def _bounds(
    tariff: CompiledTariff, axis: TimeAxis, start: date, end: date
) -> tuple[slice, datetime, datetime, ZoneInfo]:
    zone = ZoneInfo(axis.tz)
    if end <= start:
        raise RatingError(f"empty bill period {start}..{end}")
    if not tariff.spec.covers(start, end):
        raise RatingError(
            f"tariff {tariff.spec.id} v{tariff.spec.version} is not effective for the whole period {start}..{end}"
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
    axis = axis if axis is not None else build_axis(tariff, ts, tz)
    if axis.tz != tz:
        raise RatingError(f"time axis is for {axis.tz}, not {tz}")
    cols, start_utc, end_utc, _ = _bounds(tariff, axis, period_start, period_end)
    imp = np.asarray(import_wh, dtype=np.float64)
    if imp.ndim != 2 or imp.shape[1] != len(axis.ts):
        raise RatingError(f"import_wh must be (meters, {len(axis.ts)}), got {imp.shape}")
    m = imp.shape[0]
    day = axis.day[cols]
    d0, d1 = (period_start - _EPOCH).days, (period_end - _EPOCH).days
    a0 = np.maximum(_days(active_from, m, d0), d0)
    a1 = np.minimum(_days(active_to, m, d1), d1)
    days = np.maximum(a1 - a0, 0)
    partial = bool(np.any(days != d1 - d0))
    mask = (day[None, :] >= a0[:, None]) & (day[None, :] < a1[:, None]) if partial else None
    x, missing = _prepare(imp[:, cols], mask, "import_wh", nan)
    det: dict[str, I64] = {"days": days * 1000, "missing_intervals": missing}
    lines = _Lines(tariff)
    _energy(lines, det, tariff, axis, cols, x, days, d1 - d0)
    for d in tariff.demand:
        prior = None if prior_peak_w is None or d.code not in prior_peak_w else np.asarray(prior_peak_w[d.code], float)
        _demand_lines(lines, det, _peaks(x, axis, cols, d), d, prior)
    if export_wh is not None:
        ex = np.asarray(export_wh, dtype=np.float64)
        if ex.shape != imp.shape:
            raise RatingError(f"export_wh must have the shape of import_wh {imp.shape}, got {ex.shape}")
        _export(lines, det, tariff, axis, cols, _prepare(ex[:, cols], mask, "export_wh", nan)[0])
    _fixed_min_tax(lines, tariff, days, d1 - d0)
    amounts = _stack(lines.amt, m)
    total = amounts.sum(axis=1) if amounts.shape[1] else np.zeros(m, dtype=np.int64)
    qty = np.stack(lines.qty, axis=1) if lines.qty else np.zeros((m, 0), dtype=np.int64)
    return RatedBlock(
        tariff, period_start, period_end, start_utc, end_utc, d1 - d0, tz, a0, np.maximum(a1, a0), days,
        tuple(lines.specs), qty, amounts, total, det,
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


def _energy(
    lines: _Lines, det: dict[str, I64], t: CompiledTariff, axis: TimeAxis, cols: slice, x: F64, days: I64, pdays: int
) -> None:
    period = t.schedule[axis.day_type[cols], axis.month[cols], axis.hour[cols]]
    starts, run_p = _runs(period)
    run_sum = np.add.reduceat(x, starts, axis=1)
    energy_p = _group_sum(run_sum, run_p.astype(np.int64), len(t.periods))
    factor = days / pdays if t.tier_basis == "month" else days.astype(np.float64)
    limits = t.tier_limits_wh[None, :] * factor[:, None]
    tiers = _tier_energy(run_sum, limits, t, energy_p, run_p.astype(np.int64))
    qty = np.rint(tiers).astype(np.int64)  # Wh = thousandths of a kWh, half to even
    det["import_kwh"] = np.rint(energy_p.sum(axis=1)).astype(np.int64)
    multi = t.n_tiers > 1
    for p, name in enumerate(t.periods):
        det[f"import_kwh_by_period.{name}"] = np.rint(energy_p[:, p]).astype(np.int64)
        for j in range(t.n_tiers):
            suffix = f".t{j + 1}" if multi else ""
            det[f"energy_kwh.{name}{suffix}"] = qty[:, p, j]
            desc = f"Energy ({name}{f', tier {j + 1}' if multi else ''})"
            spec = LineSpec(f"energy.{name}{suffix}", desc, "energy", "kWh", t.energy_rate_text[p][j], "per kWh")
            lines.per_unit(spec, qty[:, p, j], int(t.energy_rates[p, j]))


def _export(lines: _Lines, det: dict[str, I64], t: CompiledTariff, axis: TimeAxis, cols: slice, x: F64) -> None:
    period = t.schedule[axis.day_type[cols], axis.month[cols], axis.hour[cols]]
    starts, run_p = _runs(period)
    per = _group_sum(np.add.reduceat(x, starts, axis=1), run_p.astype(np.int64), len(t.periods))
    qty = np.rint(per).astype(np.int64)
    det["export_kwh"] = np.rint(per.sum(axis=1)).astype(np.int64)
    for p, name in enumerate(t.periods):
        det[f"export_kwh_by_period.{name}"] = qty[:, p]
        if t.export_mode == "none":
            continue
        desc = "Net metering credit" if t.export_mode == "net_metering" else "Export credit"
        spec = LineSpec(f"export.{name}", f"{desc} ({name})", "export", "kWh", t.export_rate_text[p], "per kWh")
        lines.per_unit(spec, qty[:, p], int(t.export_rates[p]), sign=-1)


def _fixed_min_tax(lines: _Lines, t: CompiledTariff, days: I64, pdays: int) -> None:
    scale_to_minor = 10 ** (t.rate_scale - t.minor_units)
    month_qty = round_half_even_div(days * 1000, pdays)

    def prorated(amount: int, per: str) -> IntArray:
        if per == "day":
            return mul_round(days, amount, scale_to_minor)
        return mul_round(days, amount, pdays * scale_to_minor)  # amount x days / period days, rounded once

    for f in t.fixed:
        qty = days * 1000 if f.per == "day" else month_qty
        spec = LineSpec(f.code, f.description, "fixed", f.per, f.amount_text, f"per {f.per}")
        lines.add(spec, qty, prorated(f.amount, f.per))
    if t.minimum is not None:
        floor = prorated(t.minimum.amount, t.minimum.per)
        base = lines.total(frozenset({"energy", "demand", "fixed", "export"}))
        adj = np.maximum(floor - base, 0)
        qty = days * 1000 if t.minimum.per == "day" else month_qty
        unit = t.minimum.per
        lines.add(LineSpec("minimum", "Minimum charge adjustment", "minimum", unit, t.minimum.amount_text,
                           f"minimum per {unit}"), qty, adj)  # fmt: skip
    for tax in t.taxes:
        base = lines.total(tax.applies_to)
        amount = mul_round(base, tax.percent, 100 * 10**t.rate_scale)
        base_milli = np.asarray(base * 10 ** (3 - t.minor_units) if t.minor_units <= 3 else base, dtype=np.int64)
        lines.add(LineSpec(tax.code, tax.description, "tax", t.spec.currency, tax.percent_text, "percent"),
                  base_milli, amount)  # fmt: skip


def _stack(cols: list[IntArray], m: int) -> IntArray:
    if not cols:
        return np.zeros((m, 0), dtype=np.int64)
    if any(np.asarray(c).dtype == object for c in cols):
        return np.stack([np.asarray(c, dtype=object) for c in cols], axis=1)
    return np.stack([np.asarray(c, dtype=np.int64) for c in cols], axis=1)
