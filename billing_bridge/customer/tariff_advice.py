"""Best-tariff advice: the customer's real intervals re-rated under every eligible stored tariff with the rating engine.

Every alternative is the latest stored version of a tariff, rated with its effective dates lifted (:func:`what_if`)
and so marked hypothetical; the meter's own tariff is rated with the version effective for the period when there is
one (else it is hypothetical too). Eligible: the same currency and the same customer class as the meter's tariff.
The class is read from the tariff's id and name (``res-...`` / "Residential", ``com-...`` / "Commercial",
"Business", "Industrial"); a tariff whose class cannot be told is compared only when the meter's can't be either.

Missing intervals are rated as zero (``nan="zero"``) and counted, so a comparison never fails on a gap; every option
sees the same gaps. Money is Decimal in the tariff's currency, rounded as the engine rounds a bill.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

from amiflow.errors import RatingError
from billing_bridge.customer.usage import MeterUsage
from rating import TariffSpec, bill_json, compile_tariff, rate_block, select_version
from rating.local_time import local_start_s
from rating.tariff_store import list_tariffs, tariff_versions

__all__ = ["SavingTip", "TariffAdvice", "TariffCost", "customer_class", "tariff_advice", "what_if"]

F64 = npt.NDArray[np.float64]
_CLASSES = {
    "residential": frozenset({"res", "residential", "domestic", "household"}),
    "commercial": frozenset({"com", "commercial", "business", "industrial"}),
}
#: the share of peak-hour energy the load-shifting tip moves to the night (01:00-05:00)
SHIFT_SHARE = 0.2


@dataclass(frozen=True, slots=True)
class TariffCost:
    """What the period would cost under one tariff version."""

    tariff: str
    version: int
    name: str
    total: Decimal
    currency: str
    hypothetical: bool
    current: bool


@dataclass(frozen=True, slots=True)
class SavingTip:
    """A tip in plain words and the money it would have saved in the period."""

    text: str
    saving: Decimal
    currency: str


@dataclass(frozen=True, slots=True)
class TariffAdvice:
    """The options (cheapest first), the tips and what the comparison could not see."""

    options: tuple[TariffCost, ...]
    tips: tuple[SavingTip, ...]
    missing_intervals: int
    note: str = ""

    @property
    def current(self) -> TariffCost | None:
        return next((o for o in self.options if o.current), None)


def what_if(spec: TariffSpec) -> TariffSpec:
    """``spec`` with its effective dates lifted, so it rates any period (what such a bill says is hypothetical)."""
    return spec.model_copy(update={"effective_from": date.min, "effective_to": None})


def customer_class(spec: TariffSpec) -> str | None:
    """``residential`` or ``commercial`` as the tariff's id and name tell, None when they do not."""
    words = set(re.split(r"[^a-z]+", f"{spec.id} {spec.name}".lower()))
    found = [cls for cls, keys in _CLASSES.items() if words & keys]
    return found[0] if len(found) == 1 else None


@dataclass(frozen=True, slots=True)
class _Series:
    """The period's full interval axis with the import and export Wh (NaN where missing)."""

    ts: npt.NDArray[np.int64]
    imp: F64
    exp: F64
    missing: int


def _series(usage: MeterUsage) -> _Series:
    imp_ch, exp_ch = usage.channel("import"), usage.channel("export")
    if imp_ch is None:
        raise RatingError("no import intervals to rate")
    step = imp_ch.interval_s
    if 3600 % step:
        raise RatingError(f"intervals of {step} s cannot be rated (the step must divide an hour)")
    ts = np.arange(usage.start_ts + step, usage.end_ts + 1, step, dtype=np.int64)
    out = []
    for ch in (imp_ch, exp_ch):
        values = np.full(len(ts), np.nan)
        if ch is not None:
            pos = (ch.ts - usage.start_ts) // step - 1
            ok = ((ch.ts - usage.start_ts) % step == 0) & (pos >= 0) & (pos < len(ts))
            values[pos[ok]] = np.maximum(ch.wh[ok], 0.0)
        out.append(values)
    return _Series(ts, out[0], out[1], int(np.isnan(out[0]).sum()))


def _total(spec: TariffSpec, usage: MeterUsage, series: _Series, imp: F64 | None = None) -> Decimal:
    block = rate_block(
        compile_tariff(spec), series.ts, (series.imp if imp is None else imp)[None, :], series.exp[None, :],
        tz=usage.meter.timezone, period_start=usage.start, period_end=usage.end, nan="zero",
    )  # fmt: skip
    return Decimal(bill_json(block, 0, meter=usage.meter.meter)["total"])


def _candidates(conn: psycopg.Connection[Any], own: TariffSpec) -> list[TariffSpec]:
    latest: dict[str, int] = {}
    for row in list_tariffs(conn):
        latest[row.id] = max(latest.get(row.id, 0), row.version)
    cls = customer_class(own)
    out = []
    for tid, version in sorted(latest.items()):
        if tid == own.id:
            continue
        spec = next(s for s in tariff_versions(conn, tid) if s.version == version)
        same_usage = spec.usage_channel == own.usage_channel  # heat or water tariffs never advise on electricity
        if spec.currency == own.currency and customer_class(spec) == cls and same_usage:
            out.append(spec)
    return out


def _money(amount: Decimal, currency: str) -> str:
    return f"{amount:,.2f} {currency}"


def _tips(
    usage: MeterUsage, series: _Series, own: TariffSpec, current: TariffCost, options: Sequence[TariffCost],
    baseload_w: float | None, peak_hours: Sequence[int],
) -> list[SavingTip]:  # fmt: skip
    cur = own.currency
    tips = []
    best = options[0]
    if not best.current and best.total < current.total:
        saving = current.total - best.total
        tips.append(SavingTip(
            f"Switching to {best.name or best.tariff} ({best.tariff}) would have cost {_money(best.total, cur)}"
            f" instead of {_money(current.total, cur)} for this usage: {_money(saving, cur)} less"
            f" ({saving / current.total:.0%}).", saving, cur))  # fmt: skip
    step = int(series.ts[1] - series.ts[0]) if len(series.ts) > 1 else 900
    if baseload_w is not None and baseload_w >= 50:
        cut_w = max(10, round(baseload_w * 0.2 / 10) * 10)
        lower = np.maximum(series.imp - cut_w * step / 3600, 0.0)
        saving = current.total - _total(own, usage, series, lower)
        kwh = float(np.nansum(series.imp - lower)) / 1000
        if saving > 0:
            tips.append(SavingTip(
                f"Your always-on load is about {baseload_w:,.0f} W. Cutting it by {cut_w} W (standby devices, an old"
                f" fridge, pumps) would save about {kwh:,.1f} kWh and {_money(saving, cur)} in the period.",
                saving, cur))  # fmt: skip
    if peak_hours:
        local = local_start_s(series.ts, step, usage.meter.timezone)
        day, hour = local // 86400, (local % 86400) // 3600
        idx = day - day.min()
        moved = np.where(np.isin(hour, list(peak_hours)), np.nan_to_num(series.imp) * SHIFT_SHARE, 0.0)
        night = (hour >= 1) & (hour < 5)
        nights = np.bincount(idx, night.astype(np.float64))
        per_night = np.divide(np.bincount(idx, moved), nights, out=np.zeros_like(nights), where=nights > 0)
        moved = np.where(nights[idx] > 0, moved, 0.0)
        shifted = series.imp - moved + np.where(night, per_night[idx], 0.0)
        saving = current.total - _total(own, usage, series, shifted)
        if saving > 0:
            hours = ", ".join(f"{h:02d}:00" for h in sorted(peak_hours))
            tips.append(SavingTip(
                f"Moving {SHIFT_SHARE:.0%} of the energy you use in your busiest hours (starting {hours}) to the night"
                f" (a timer on the dishwasher, washing machine or car charger) would save {_money(saving, cur)}"
                f" on your tariff.", saving, cur))  # fmt: skip
    return tips


def tariff_advice(
    conn: psycopg.Connection[Any],
    usage: MeterUsage,
    *,
    baseload_w: float | None = None,
    peak_hours: Sequence[int] = (),
) -> TariffAdvice:
    """Rate ``usage`` (whole local days) under the meter's tariff and every eligible one; the tips save money."""
    tid = usage.meter.tariff
    versions = tariff_versions(conn, tid) if tid else []
    if not versions:
        why = "the meter has no tariff" if not tid else f"tariff {tid} is not stored"
        return TariffAdvice((), (), 0, f"no tariff comparison: {why}")
    try:
        own, own_hypothetical = select_version(versions, usage.start, usage.end), False
    except RatingError:
        own, own_hypothetical = what_if(max(versions, key=lambda s: s.version)), True
    try:
        series = _series(usage)
        current = TariffCost(own.id, own.version, own.name, _total(own, usage, series), own.currency,
                             own_hypothetical, True)  # fmt: skip
        options = [current] + [
            TariffCost(s.id, s.version, s.name, _total(what_if(s), usage, series), s.currency, True, False)
            for s in _candidates(conn, own)
        ]
    except RatingError as exc:
        return TariffAdvice((), (), 0, f"no tariff comparison: {exc}")
    options.sort(key=lambda o: (o.total, not o.current))
    tips = _tips(usage, series, own, current, options, baseload_w, peak_hours)
    note = ""
    if options[0].current:
        note = f"your tariff {own.id} is the cheapest of the {len(options)} eligible for this usage"
    return TariffAdvice(tuple(options), tuple(tips), series.missing, note)
