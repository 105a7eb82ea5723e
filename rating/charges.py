"""The charges of a block, appended to its LineTable: energy (TOU periods x tiers), export credits, demand, and the
fixed, minimum and tax lines computed from them.

The hot path is numpy over the (meters x intervals) matrix ``x`` (Wh per interval, the period's columns ``cols`` of
the time axis): one ``add.reduceat`` over runs of equal TOU period for energy, and per demand charge one
``maximum.reduceat`` (plus one ``add.reduceat`` when its demand interval is 30 or 60 minutes). Tiers
(rating.tiers) use the run sums only.

Ratchets: billed kW = max(peak, the highest of the earlier monthly peaks of the look-back window, each times the
percent of its calendar month). When a bill period is a part of a period split at a tariff change
(rating.tariff_change), a demand charge is prorated: amount = kW x rate x part days / active days of the period.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from rating.compile import CompiledDemand, CompiledTariff
from rating.lines import LineSpec, LineTable
from rating.money import IntArray, mul_round, round_half_even_div
from rating.tiers import group_sum, tier_energy
from rating.time_axis import TimeAxis

__all__ = ["demand_lines", "demand_peaks", "energy_lines", "export_lines", "fixed_minimum_tax_lines"]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


def _runs(idx: npt.NDArray[Any]) -> tuple[I64, npt.NDArray[Any]]:
    """Start positions of runs of equal values, and each run's value."""
    starts = np.flatnonzero(np.r_[True, idx[1:] != idx[:-1]])
    return starts, idx[starts]


def energy_lines(
    lines: LineTable, det: dict[str, I64], t: CompiledTariff, axis: TimeAxis, cols: slice, x: F64, days: I64, pdays: int
) -> None:
    period = t.schedule[axis.day_type[cols], axis.month[cols], axis.hour[cols]]
    starts, run_p = _runs(period)
    run_sum = np.add.reduceat(x, starts, axis=1)
    energy_p = group_sum(run_sum, run_p.astype(np.int64), len(t.periods))
    factor = days / pdays if t.tier_basis == "month" else days.astype(np.float64)
    tiers = tier_energy(t, run_sum, run_p.astype(np.int64), energy_p, factor)
    qty = np.rint(tiers).astype(np.int64)  # thousandths of the tariff's unit (Wh of a kWh tariff), half to even
    det["import_kwh"] = np.rint(energy_p.sum(axis=1)).astype(np.int64)
    multi = t.n_tiers > 1
    for p, name in enumerate(t.periods):
        det[f"import_kwh_by_period.{name}"] = np.rint(energy_p[:, p]).astype(np.int64)
        for j in range(t.n_tiers):
            suffix = f".t{j + 1}" if multi else ""
            det[f"energy_kwh.{name}{suffix}"] = qty[:, p, j]
            desc = f"Energy ({name}{f', tier {j + 1}' if multi else ''})"
            spec = LineSpec(f"energy.{name}{suffix}", desc, "energy", t.unit, t.energy_rate_text[p][j], f"per {t.unit}")
            lines.per_unit(spec, qty[:, p, j], int(t.energy_rates[p, j]))


def export_lines(lines: LineTable, det: dict[str, I64], t: CompiledTariff, axis: TimeAxis, cols: slice, x: F64) -> None:
    period = t.schedule[axis.day_type[cols], axis.month[cols], axis.hour[cols]]
    starts, run_p = _runs(period)
    per = group_sum(np.add.reduceat(x, starts, axis=1), run_p.astype(np.int64), len(t.periods))
    qty = np.rint(per).astype(np.int64)
    det["export_kwh"] = np.rint(per.sum(axis=1)).astype(np.int64)
    for p, name in enumerate(t.periods):
        det[f"export_kwh_by_period.{name}"] = qty[:, p]
        if t.export_mode == "none":
            continue
        desc = "Net metering credit" if t.export_mode == "net_metering" else "Export credit"
        spec = LineSpec(f"export.{name}", f"{desc} ({name})", "export", "kWh", t.export_rate_text[p], "per kWh")
        lines.per_unit(spec, qty[:, p], int(t.export_rates[p]), sign=-1)


def demand_peaks(x: F64, axis: TimeAxis, cols: slice, d: CompiledDemand) -> tuple[F64, npt.NDArray[np.bool_]]:
    """([M, P] highest block-average demand (W) of each demand period of ``d``, [P] periods with blocks)."""
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
    present = np.zeros(len(d.periods), dtype=bool)
    for p in range(len(d.periods)):
        sel = run_p == p
        if sel.any():
            out[:, p] = run_max[:, sel].max(axis=1)
            present[p] = True
    return out, present


def _ratchet_w(d: CompiledDemand, prior: F64, first_month: int) -> I64:
    """[M] ratchet floor (W) from earlier monthly peaks ``prior`` (M, N), most recent (the month before) last."""
    assert d.ratchet_by_month is not None
    recent = prior[:, -d.ratchet_months :]
    months = (first_month - recent.shape[1] + np.arange(recent.shape[1])) % 12  # calendar month of each column
    pct = [float(d.ratchet_by_month[k]) for k in months]
    uniform = len(set(pct)) == 1
    weighted = recent if uniform else recent * (np.array(pct) / 100.0)[None, :]
    with np.errstate(all="ignore"):
        floor_w = np.where(np.isnan(weighted).all(axis=1), 0.0, np.nanmax(np.nan_to_num(weighted, nan=-1.0), axis=1))
    return np.rint(floor_w * pct[0] / 100.0 if uniform else floor_w).astype(np.int64)


def demand_lines(
    lines: LineTable,
    det: dict[str, I64],
    peaks: tuple[F64, npt.NDArray[np.bool_]],
    d: CompiledDemand,
    prior: F64 | None,
    *,
    first_month: int = 0,
    share: tuple[I64, I64] | None = None,
) -> None:
    """Demand lines of ``d`` from its peaks; ``first_month`` (0-11) is the bill period's first month, ``share``
    (part days, active days) [M] prorates the amounts of a part of a split period."""
    peak_w, present = np.rint(peaks[0]).astype(np.int64), peaks[1]
    billed = peak_w.copy()
    if d.ratchet_by_month is not None and prior is not None and prior.size:
        ratchet = _ratchet_w(d, prior, first_month)
        for p in [0] if d.monthly_peak else np.flatnonzero(present):
            billed[:, p] = np.maximum(billed[:, p], ratchet)
    if d.ratchet_by_month is not None and not d.monthly_peak:
        det[f"peak_kw.{d.code}.all"] = peak_w.max(axis=1) if peak_w.shape[1] else np.zeros(len(peak_w), np.int64)
    limits = np.r_[0.0, d.limits_w, np.inf]
    for p, name in enumerate(d.periods):
        det[f"peak_kw.{d.code}.{name}"] = peak_w[:, p]
        if d.ratchet_by_month is not None:
            det[f"billed_kw.{d.code}.{name}"] = billed[:, p]
        if not d.charged[p]:
            continue
        for j in range(len(limits) - 1):
            qty = np.clip(billed[:, p], limits[j], limits[j + 1]).astype(np.int64) - int(min(limits[j], 2**62))
            qty = np.maximum(qty, 0)
            tier = f" tier {j + 1}" if len(limits) > 2 else ""
            spec = LineSpec(f"{d.code}.{name}" + (f".t{j + 1}" if len(limits) > 2 else ""),
                            f"{d.description} ({name}{tier})", "demand", "kW", d.rate_text[p][j], "per kW")  # fmt: skip
            lines.per_unit(spec, qty, int(d.rates[p, j]), share=share)


def fixed_minimum_tax_lines(lines: LineTable, t: CompiledTariff, days: I64, pdays: int) -> None:
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
