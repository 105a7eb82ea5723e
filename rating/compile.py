"""Compile a TariffSpec once into lookup arrays and scaled-integer rates for the engine.

Every money value of the tariff (rates, fixed amounts, minimum, tax percents) becomes an int scaled by
``10**rate_scale``, where ``rate_scale`` is the most decimal places any of them uses (at least the currency's minor
units), so the engine multiplies integers only (rating.money).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from amiflow.errors import RatingError
from rating.money import MINOR_UNITS, decimal_places, scaled_int
from rating.tariff import LINE_CATEGORIES, USAGE_UNITS, DemandSpec, HolidaySpec, TariffSpec
from rating.tou import tou_schedule

__all__ = [
    "CompiledDemand",
    "CompiledFixed",
    "CompiledTariff",
    "CompiledTax",
    "compile_tariff",
]

I64 = npt.NDArray[np.int64]
I8 = npt.NDArray[np.int8]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class CompiledDemand:
    """A demand charge: its periods, schedule [3, 12, 24], tier limits (W) and rates [period, tier] (scaled)."""

    code: str
    description: str
    periods: tuple[str, ...]
    schedule: I8
    limits_w: F64
    rates: I64
    rate_text: tuple[tuple[Decimal, ...], ...]
    charged: npt.NDArray[np.bool_]  # [period]: has a rate
    interval_s: int
    months: npt.NDArray[np.bool_]  # [12]: months the charge applies in
    ratchet_pct: Decimal | None
    ratchet_months: int
    ratchet_by_month: tuple[Decimal, ...] | None = None  # [12] percent by calendar month of the earlier peak
    monthly_peak: bool = True  # tou unset: one period "all" (else a schedule by month, or TOU periods)


@dataclass(frozen=True, slots=True)
class CompiledFixed:
    """A fixed charge, scaled amount per month or per day."""

    code: str
    description: str
    amount: int
    amount_text: Decimal
    per: str


@dataclass(frozen=True, slots=True)
class CompiledTax:
    """A percentage (scaled) of the lines whose category or code is in ``applies_to``."""

    code: str
    description: str
    percent: int
    percent_text: Decimal
    applies_to: frozenset[str]


@dataclass(frozen=True, slots=True)
class CompiledTariff:
    """A tariff version as arrays; build with :func:`compile_tariff` and reuse for every block of meters."""

    spec: TariffSpec
    minor_units: int
    rate_scale: int
    periods: tuple[str, ...]
    schedule: I8  # [day type (weekday, weekend, holiday), month 0-11, hour 0-23] -> period index
    tier_limits_wh: F64  # ascending upper bounds of the blocks, Wh (per month or per day); period 0's if they differ
    tier_basis: str
    allocation: str
    energy_rates: I64  # [period, tier], scaled
    energy_rate_text: tuple[tuple[Decimal, ...], ...]
    demand: tuple[CompiledDemand, ...]
    fixed: tuple[CompiledFixed, ...]
    minimum: CompiledFixed | None
    taxes: tuple[CompiledTax, ...]
    export_mode: str
    export_rates: I64  # [period], scaled, credited per exported kWh
    export_rate_text: tuple[Decimal, ...]
    period_tier_limits_wh: F64  # [period, tier - 1] bounds of each TOU period (inf past a period's own tiers)
    unit: str = "kWh"  # of the energy quantities, rates and tier limits (the "Wh" names above: thousandths of it)
    usage_scale: float = 1.0  # thousandths of ``unit`` per base unit of the channel (Wh or m3) over 1 per Wh
    channel: str = "1-0:1.29.0"  # the interval channel billed

    @property
    def n_tiers(self) -> int:
        """Number of energy blocks (1 without tiers; the most any TOU period has)."""
        return int(self.period_tier_limits_wh.shape[1]) + 1

    def holiday_days(self, years: Iterable[int]) -> I64:
        """Holiday day numbers (days since 1970-01-01) for ``years``."""
        return _holidays(self.spec.holidays.model_dump_json(), tuple(sorted(set(years))))


@lru_cache(maxsize=256)
def _holidays(calendar_json: str, years: tuple[int, ...]) -> I64:
    return HolidaySpec.model_validate_json(calendar_json).days(years)


def _all_money(spec: TariffSpec) -> list[Decimal]:
    values = [r for rates in spec.energy.rates.values() for r in rates]
    values += [r for d in spec.demand for rates in d.rates.values() for r in rates]
    values += [f.amount for f in spec.fixed] + [t.percent for t in spec.taxes]
    values += [spec.minimum.amount] if spec.minimum else []
    values += [spec.export.rate] if spec.export.rate is not None else []
    return values + list(spec.export.rates.values())


def _rate_table(
    rates: dict[str, list[Decimal]], periods: tuple[str, ...], n_tiers: int, scale: int, what: str
) -> tuple[I64, tuple[tuple[Decimal, ...], ...], npt.NDArray[np.bool_]]:
    unknown = set(rates) - set(periods)
    if unknown:
        raise RatingError(f"{what}: rates for unknown periods {sorted(unknown)} (periods: {list(periods)})")
    table = np.zeros((len(periods), n_tiers), dtype=np.int64)
    text: list[tuple[Decimal, ...]] = []
    for i, period in enumerate(periods):
        row = rates.get(period, [Decimal(0)])
        row = row + [row[-1]] * (n_tiers - len(row))  # one rate for all blocks, or fewer blocks than the most
        table[i] = [scaled_int(r, scale) for r in row]
        text.append(tuple(row))
    return table, tuple(text), np.array([p in rates for p in periods], dtype=bool)


def _demand(spec: TariffSpec, d: DemandSpec, energy: tuple[tuple[str, ...], I8], scale: int) -> CompiledDemand:
    periods: tuple[str, ...]
    if d.tou is None:
        periods, sched = ("all",), np.zeros((3, 12, 24), dtype=np.int8)
    elif d.tou == "energy":
        periods, sched = energy
    else:
        periods, sched = tou_schedule(d.tou, spec.seasons)
    limits = np.array([float(x) * 1000.0 for x in d.tier_limits_kw], dtype=np.float64)
    rates, text, charged = _rate_table(d.rates, periods, len(limits) + 1, scale, f"demand {d.code}")
    months = np.zeros(12, dtype=bool)
    months[[m - 1 for m in (d.months or range(1, 13))]] = True
    by_month = (
        tuple(d.ratchet_pct_by_month) if d.ratchet_pct_by_month is not None
        else (d.ratchet_pct,) * 12 if d.ratchet_pct is not None else None
    )  # fmt: skip
    return CompiledDemand(
        d.code, d.description, periods, sched, limits, rates, text, charged, d.interval_min * 60, months,
        d.ratchet_pct, d.ratchet_months, by_month, d.tou is None,
    )  # fmt: skip


def _energy_limits(spec: TariffSpec, periods: tuple[str, ...]) -> tuple[F64, F64]:
    """(shared bounds, [period, tier - 1] bounds) in Wh; a period with fewer blocks is padded with inf."""
    unknown = set(spec.energy.tier_limits_kwh_by_period) - set(periods)
    if unknown:
        raise RatingError(f"energy.tier_limits_kwh_by_period: unknown periods {sorted(unknown)}")
    rows = [[float(x) * 1000.0 for x in spec.energy.limits_of(p)] for p in periods]
    width = max((len(r) for r in rows), default=0)
    table = np.full((len(periods), width), np.inf)
    for i, r in enumerate(rows):
        table[i, : len(r)] = r
    return np.array(rows[0] if rows else [], dtype=np.float64), table


def compile_tariff(spec: TariffSpec) -> CompiledTariff:
    """Validate cross-references and build the lookup arrays (once per tariff version, outside the hot path)."""
    if spec.currency not in MINOR_UNITS:
        raise RatingError(f"tariff {spec.id}: currency {spec.currency} has no known minor unit")
    minor = MINOR_UNITS[spec.currency]
    scale = max([minor, *(decimal_places(v) for v in _all_money(spec))])
    if scale > 12:
        raise RatingError(f"tariff {spec.id}: a rate has more than 12 decimal places")
    too_large = [v for v in _all_money(spec) if abs(v).scaleb(scale) >= 2**63]
    if too_large:  # the lookup tables hold exact int64 amounts of 10**-scale currency units
        raise RatingError(f"tariff {spec.id}: {too_large[0]} is too large for a rate or charge")
    periods, sched = tou_schedule(spec.tou, spec.seasons)
    limits, period_limits = _energy_limits(spec, periods)
    rates, rate_text, _ = _rate_table(spec.energy.rates, periods, period_limits.shape[1] + 1, scale, "energy")
    missing = [p for p in periods if p not in spec.energy.rates]
    if missing:
        raise RatingError(f"tariff {spec.id}: no energy rate for TOU period(s) {missing}")
    demand = tuple(_demand(spec, d, (periods, sched), scale) for d in spec.demand)
    fixed = tuple(
        CompiledFixed(f.code, f.description, scaled_int(f.amount, scale), f.amount, f.per) for f in spec.fixed
    )
    minimum = (
        CompiledFixed("minimum", "Minimum charge adjustment", scaled_int(spec.minimum.amount, scale),
                      spec.minimum.amount, spec.minimum.per)
        if spec.minimum else None
    )  # fmt: skip
    codes = {d.code for d in spec.demand} | {f.code for f in spec.fixed} | LINE_CATEGORIES
    taxes = []
    for t in spec.taxes:
        unknown = set(t.applies_to) - codes - {x.code for x in spec.taxes}
        if unknown:
            raise RatingError(f"tax {t.code}: applies_to names unknown lines {sorted(unknown)}")
        pct = scaled_int(t.percent, scale)
        taxes.append(CompiledTax(t.code, t.description, pct, t.percent, frozenset(t.applies_to)))
    ex = spec.export
    if ex.mode == "net_metering":
        ex_text = tuple(rate_text[i][0] for i in range(len(periods)))
    elif ex.mode == "credit":
        unknown = set(ex.rates) - set(periods)
        if unknown:
            raise RatingError(f"export.rates: unknown periods {sorted(unknown)}")
        ex_text = tuple(ex.rates.get(p, ex.rate if ex.rate is not None else Decimal(0)) for p in periods)
    else:
        ex_text = tuple(Decimal(0) for _ in periods)
    export_rates = np.array([scaled_int(r, scale) for r in ex_text], dtype=np.int64)
    per_unit = USAGE_UNITS[spec.unit][1]
    return CompiledTariff(
        spec, minor, scale, periods, sched, limits, spec.energy.tier_basis, spec.energy.allocation, rates, rate_text,
        demand, fixed, minimum, tuple(taxes), ex.mode, export_rates, ex_text, period_limits, spec.unit,
        float(Decimal(1000) / per_unit), spec.usage_channel,
    )  # fmt: skip
