"""Usage insights for a customer: baseload, peak hours, this month against the last and against a year ago, and the
best-tariff advice (billing_bridge.customer.tariff_advice), in plain words and as JSON.

- baseload: the 10th percentile of the night intervals' mean power (intervals starting 00:00-05:00 local), in W;
- peak hours: the local hours of day (by interval start) with the highest mean import, as mean kW;
- comparisons: import kWh of the month against the previous month and the same month a year earlier (kWh and %),
  from the same store read as the export (a month without data is said so, not compared).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

from billing_bridge.customer.tariff_advice import TariffAdvice, tariff_advice
from billing_bridge.customer.usage import Channel, MeterInfo, check_year, load_channels, read_usage
from rating.local_time import local_start_s

__all__ = ["Comparison", "Insights", "baseload_w", "month_after", "peak_hours", "usage_insights"]

NIGHT_HOURS = range(0, 5)
PEAK_HOURS = 3


@dataclass(frozen=True, slots=True)
class Comparison:
    """This month's import against another month's; ``kwh`` None when that month has no data."""

    against: str  # "the previous month" | "the same month last year"
    period: str  # YYYY-MM
    kwh: float | None
    delta_kwh: float | None
    delta_pct: float | None


@dataclass(frozen=True, slots=True)
class Insights:
    """Everything ``amiflow usage insights`` shows for one meter and month."""

    meter: MeterInfo
    period: str
    kwh_import: float
    kwh_export: float
    intervals: int
    expected_intervals: int
    baseload_w: float | None
    peak_hours: tuple[tuple[int, float], ...]  # (local hour, mean kW), busiest first
    comparisons: tuple[Comparison, ...]
    advice: TariffAdvice

    def sentences(self) -> list[str]:
        """The insights in plain words, one sentence a line."""
        out = [f"In {self.period} meter {self.meter.meter} used {self.kwh_import:,.1f} kWh"
               + (f" and fed {self.kwh_export:,.1f} kWh into the grid." if self.kwh_export else ".")]  # fmt: skip
        if self.intervals < self.expected_intervals:
            out.append(f"{self.expected_intervals - self.intervals} of the month's {self.expected_intervals}"
                       " intervals are missing, so these figures are a lower bound.")  # fmt: skip
        for c in self.comparisons:
            if c.kwh is None or c.delta_kwh is None:
                out.append(f"There is no data for {c.period} ({c.against}) to compare with.")
            else:
                more = "more" if c.delta_kwh >= 0 else "less"
                pct = f" ({abs(c.delta_pct):.1f}% {more})" if c.delta_pct is not None else ""
                out.append(f"That is {abs(c.delta_kwh):,.1f} kWh {more} than in {c.period}, {c.against}{pct}.")
        if self.baseload_w is not None:
            out.append(f"Your baseload (what runs all night) is about {self.baseload_w:,.0f} W.")
        if self.peak_hours:
            hours = ", ".join(f"{h:02d}:00-{(h + 1) % 24:02d}:00 ({kw:.2f} kW)" for h, kw in self.peak_hours)
            out.append(f"You use the most power at {hours} on average.")
        if self.advice.options:
            out.append("What this usage costs on each eligible tariff, cheapest first:")
        for o in self.advice.options:
            tag = "your tariff" if o.current else "hypothetical"
            if o.current and o.hypothetical:
                tag += ", hypothetical"
            out.append(f"  {o.tariff} v{o.version} ({tag}): {o.total:,.2f} {o.currency}")
        if self.advice.note:
            out.append(self.advice.note[0].upper() + self.advice.note[1:] + ".")
        out += [f"Tip: {t.text}" for t in self.advice.tips]
        return out

    def to_json(self) -> dict[str, Any]:
        """The JSON form: kWh and kW as numbers, money as decimal strings."""
        a = self.advice
        return {
            "meter": self.meter.meter,
            "account": self.meter.account,
            "timezone": self.meter.timezone,
            "period": self.period,
            "kwh_import": round(self.kwh_import, 3),
            "kwh_export": round(self.kwh_export, 3),
            "intervals": self.intervals,
            "expected_intervals": self.expected_intervals,
            "baseload_w": None if self.baseload_w is None else round(self.baseload_w, 1),
            "peak_hours": [
                {"hour": h, "label": f"{h:02d}:00-{(h + 1) % 24:02d}:00", "mean_kw": round(kw, 3)}
                for h, kw in self.peak_hours
            ],
            "comparisons": [
                {
                    "against": c.against,
                    "period": c.period,
                    "kwh_import": c.kwh,
                    "delta_kwh": c.delta_kwh,
                    "delta_pct": c.delta_pct,
                }
                for c in self.comparisons
            ],
            "tariffs": [
                {
                    "tariff": o.tariff,
                    "version": o.version,
                    "name": o.name,
                    "total": str(o.total),
                    "currency": o.currency,
                    "hypothetical": o.hypothetical,
                    "current": o.current,
                }
                for o in a.options
            ],
            "tips": [{"text": t.text, "saving": str(t.saving), "currency": t.currency} for t in a.tips],
            "missing_intervals": a.missing_intervals,
            "note": a.note,
            "summary": self.sentences(),
        }


def _local(ch: Channel, tz: str) -> npt.NDArray[np.int64]:
    return local_start_s(ch.ts, ch.interval_s, tz)


def baseload_w(ch: Channel, tz: str) -> float | None:
    """The 10th percentile of the mean power (W) of the intervals starting at night; None without any."""
    hour = (_local(ch, tz) % 86400) // 3600
    night = ch.wh[np.isin(hour, list(NIGHT_HOURS))] * 3600 / ch.interval_s
    return float(np.percentile(night, 10)) if night.size else None


def peak_hours(ch: Channel, tz: str, n: int = PEAK_HOURS) -> tuple[tuple[int, float], ...]:
    """The ``n`` local hours of day with the highest mean import, as (hour, mean kW), busiest first."""
    hour = (_local(ch, tz) % 86400) // 3600
    count = np.bincount(hour, minlength=24)
    mean_kw = np.divide(np.bincount(hour, ch.wh, minlength=24), count, out=np.zeros(24), where=count > 0)
    mean_kw *= 3.6 / ch.interval_s
    order = sorted((h for h in range(24) if count[h]), key=lambda h: (-mean_kw[h], h))
    return tuple((int(h), float(mean_kw[h])) for h in order[:n])


def month_after(d: date, months: int = 1) -> date:
    """The first day of the month ``months`` after ``d``'s (negative: before)."""
    k = d.year * 12 + d.month - 1 + months
    return date(k // 12, k % 12 + 1, 1)


def _compare(conn: psycopg.Connection[Any], info: MeterInfo, kwh: float, start: date, against: str) -> Comparison:
    other = load_channels(conn, info, start, month_after(start)).channel("import")
    label = start.isoformat()[:7]
    if other is None:
        return Comparison(against, label, None, None, None)
    theirs = other.total_wh / 1000
    pct = round((kwh - theirs) / theirs * 100, 1) if theirs else None
    return Comparison(against, label, round(theirs, 3), round(kwh - theirs, 3), pct)


def usage_insights(conn: psycopg.Connection[Any], meter: str, period: date, *, account: str | None = None) -> Insights:
    """Insights and tariff advice for ``meter`` in the local month starting ``period``; UsageNotFound without data."""
    check_year(period)
    start, end = period.replace(day=1), month_after(period)
    usage = read_usage(conn, meter, start, end, account=account)
    info = usage.meter
    imp, exp = usage.channel("import"), usage.channel("export")
    kwh = imp.total_wh / 1000 if imp is not None else 0.0
    step = imp.interval_s if imp is not None else 900
    base = baseload_w(imp, info.timezone) if imp is not None else None
    peaks = peak_hours(imp, info.timezone) if imp is not None else ()
    comparisons = (
        _compare(conn, info, kwh, month_after(start, -1), "the previous month"),
        _compare(conn, info, kwh, month_after(start, -12), "the same month last year"),
    )
    advice = tariff_advice(conn, usage, baseload_w=base, peak_hours=[h for h, _ in peaks])
    return Insights(
        meter=info,
        period=start.isoformat()[:7],
        kwh_import=kwh,
        kwh_export=exp.total_wh / 1000 if exp is not None else 0.0,
        intervals=len(imp.ts) if imp is not None else 0,
        expected_intervals=(usage.end_ts - usage.start_ts) // step,
        baseload_w=base,
        peak_hours=peaks,
        comparisons=comparisons,
        advice=advice,
    )
