"""The charges of a block, appended to its LineTable: energy (TOU periods x tiers), export credits, demand, and the
fixed, minimum and tax lines computed from them.

The hot path is numpy over the (meters x intervals) matrix ``x`` (Wh per interval, the period's columns ``cols`` of
the time axis): one ``add.reduceat`` over runs of equal TOU period for energy, and per demand charge one
``maximum.reduceat`` (plus one ``add.reduceat`` when its demand interval is 30 or 60 minutes). Tiers use the run
sums only: the energy of a tier inside a run telescopes to ``f(C_end) - f(C_start)`` of the cumulative energy C, so
chronological allocation costs no extra pass.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from rating.compile import CompiledDemand, CompiledTariff
from rating.lines import LineSpec, LineTable
from rating.money import IntArray, mul_round, round_half_even_div
from rating.time_axis import TimeAxis

__all__ = ["demand_lines", "demand_peaks", "energy_lines", "export_lines", "fixed_minimum_tax_lines"]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


def _runs(idx: npt.NDArray[Any]) -> tuple[I64, npt.NDArray[Any]]:
    """Start positions of runs of equal values, and each run's value."""
    starts = np.flatnonzero(np.r_[True, idx[1:] != idx[:-1]])
    return starts, idx[starts]


def _group_sum(run_values: F64, run_period: npt.NDArray[Any], n_periods: int) -> F64:
    onehot = np.zeros((len(run_period), n_periods))
    onehot[np.arange(len(run_period)), run_period] = 1.0
    return np.asarray(run_values @ onehot)


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


def energy_lines(
    lines: LineTable, det: dict[str, I64], t: CompiledTariff, axis: TimeAxis, cols: slice, x: F64, days: I64, pdays: int
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


def export_lines(lines: LineTable, det: dict[str, I64], t: CompiledTariff, axis: TimeAxis, cols: slice, x: F64) -> None:
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


def demand_peaks(x: F64, axis: TimeAxis, cols: slice, d: CompiledDemand) -> F64:
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


def demand_lines(lines: LineTable, det: dict[str, I64], peaks: F64, d: CompiledDemand, prior: F64 | None) -> None:
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
