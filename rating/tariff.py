"""The tariff model: amiflow's own form of a tariff version, validated with pydantic at the edge.

A tariff is one *version* (``id`` + ``version``) valid from ``effective_from`` to ``effective_to`` (exclusive).
Time-of-use periods come either from 12 x 24 matrices per day type (weekday / weekend / holiday, as OpenEI URDB uses
them, values index ``tou.periods``) or from readable rules (rating.tou reads them)::

    [tou]
    default = "off_peak"
    rules = ["peak: weekdays 16-21 Jun-Sep", "part_peak: weekdays 14-16,21-23 summer", "peak: holidays 17-20 Jun-Sep"]

Heat, water and gas are billed like electricity on their own interval channel: ``unit`` (kWh by default; MWh or Wh
of energy, m3 of volume) is the unit of the energy rates and tier limits, and ``channel`` the interval channel the
billing run reads (``1-0:1.29.0`` by default, ``8-0:1.29.0`` for m3; a heat tariff names ``6-0:1.29.0``). Stored
readings are in base units (Wh, m3): the engine converts them to the tariff's unit.

Reading files (amiflow JSON/TOML or OpenEI URDB) is rating.tariff_files; see docs/rating.md for every field;
:func:`compile_tariff` (rating.compile) turns a spec into lookup arrays.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from datetime import date
from decimal import Decimal
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from amiflow.errors import RatingError

__all__ = [
    "USAGE_UNITS",
    "DemandSpec",
    "EnergySpec",
    "ExportSpec",
    "FixedSpec",
    "HolidaySpec",
    "MinimumSpec",
    "TariffSpec",
    "TaxSpec",
    "TouSpec",
    "select_version",
]

LINE_CATEGORIES = frozenset({"energy", "demand", "fixed", "minimum", "export"})
#: billed unit -> (base unit of the channel, base units per billed unit)
USAGE_UNITS: dict[str, tuple[str, Decimal]] = {
    "kWh": ("Wh", Decimal(1000)),
    "MWh": ("Wh", Decimal(1_000_000)),
    "Wh": ("Wh", Decimal(1)),
    "m3": ("m3", Decimal(1)),
}
_INTERVAL_CHANNEL = re.compile(r"^\d{1,3}-\d{1,3}:\d{1,3}\.29\.\d{1,3}$")

Matrix = list[list[int]]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TouSpec(_Model):
    """Time-of-use periods: matrices (12 months x 24 hours of period indices) or rules, not both."""

    periods: list[str] = Field(default_factory=list, description="period names; matrices index into this list")
    default: str | None = Field(None, description="period of every hour no rule covers")
    rules: list[str] = Field(default_factory=list)
    weekday: Matrix | None = None
    weekend: Matrix | None = None
    holiday: Matrix | None = None

    @model_validator(mode="after")
    def _one_form(self) -> TouSpec:
        if self.weekday is not None:
            if self.rules:
                raise ValueError("give either matrices (weekday/weekend/holiday) or rules, not both")
            for name, m in (("weekday", self.weekday), ("weekend", self.weekend), ("holiday", self.holiday)):
                if m is None:
                    continue
                if len(m) != 12 or any(len(row) != 24 for row in m):
                    raise ValueError(f"tou.{name} must be 12 rows (months) of 24 hours")
                if any(not 0 <= v < len(self.periods) for row in m for v in row):
                    raise ValueError(f"tou.{name} holds a period index outside tou.periods ({len(self.periods)})")
        elif self.default is None:
            raise ValueError("tou needs a default period (or weekday/weekend matrices)")
        return self


class HolidaySpec(_Model):
    """Holidays from the ``holidays`` package (country / subdivision), plus extra dates, minus removed ones."""

    country: str | None = None
    subdivision: str | None = None
    extra: list[date] = Field(default_factory=list)
    remove: list[date] = Field(default_factory=list)
    observed: bool = True

    def days(self, years: Iterable[int]) -> npt.NDArray[np.int64]:
        """Holiday dates of ``years`` as day numbers since 1970-01-01."""
        found: set[date] = set(self.extra)
        years = sorted(set(years))
        if self.country:
            import holidays as holidays_lib

            try:
                cal = holidays_lib.country_holidays(
                    self.country, subdiv=self.subdivision, years=years, observed=self.observed
                )
            except NotImplementedError as exc:
                raise RatingError(f"unknown holiday calendar {self.country}/{self.subdivision}: {exc}") from exc
            found.update(cal.keys())
        found.difference_update(self.remove)
        epoch = date(1970, 1, 1)
        return np.array(sorted((d - epoch).days for d in found), dtype=np.int64)


class EnergySpec(_Model):
    """Energy rates ($/kWh, exact decimals) per TOU period, one per tier (or one for all tiers)."""

    rates: dict[str, list[Decimal]]
    tier_limits_kwh: list[Decimal] = Field(default_factory=list, description="ascending upper bounds of the blocks")
    tier_limits_kwh_by_period: dict[str, list[Decimal]] = Field(
        default_factory=dict, description="bounds of the named TOU periods (URDB form); others use tier_limits_kwh"
    )
    tier_basis: Literal["month", "day"] = "month"
    allocation: Literal["pro_rata", "chronological"] = "pro_rata"

    @field_validator("rates", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return {k: (r if isinstance(r, list) else [r]) for k, r in v.items()} if isinstance(v, dict) else v

    def limits_of(self, period: str) -> list[Decimal]:
        """The block bounds (kWh) of one TOU period."""
        return self.tier_limits_kwh_by_period.get(period, self.tier_limits_kwh)

    @model_validator(mode="after")
    def _tiers(self) -> EnergySpec:
        for where, limits in [("", self.tier_limits_kwh)] + [
            (f"_by_period.{p}", b) for p, b in self.tier_limits_kwh_by_period.items()
        ]:
            if any(b <= a for a, b in itertools.pairwise(limits)) or any(x <= 0 for x in limits):
                raise ValueError(f"energy.tier_limits_kwh{where} must be positive and ascending")
        for period, rates in self.rates.items():
            n = len(self.limits_of(period)) + 1
            if len(rates) not in (1, n):
                raise ValueError(f"energy.rates.{period}: give 1 rate or {n} (one per tier)")
        return self


class DemandSpec(_Model):
    """A demand charge ($/kW) on the peak block-average demand of each of its periods in the bill period.

    ``tou`` None = one period ``all`` (the monthly peak); ``"energy"`` = the energy TOU periods; or its own schedule.
    ``months`` limits the charge to intervals in those months. A ratchet bills at least ``ratchet_pct`` % of the
    highest peak of the previous ``ratchet_months`` months; ``ratchet_pct_by_month`` (12 values, URDB
    ``demandratchetpercentage`` / ``lookbackMonths``) gives the percent by the calendar month of each earlier peak
    (0 = that month's peak does not count). Ratchets need a monthly peak: ``tou`` unset, or a schedule that depends
    on the month only (URDB flat demand with month-dependent rates).
    """

    code: str = "demand"
    description: str = "Demand charge"
    rates: dict[str, list[Decimal]]
    tier_limits_kw: list[Decimal] = Field(default_factory=list)
    tou: TouSpec | Literal["energy"] | None = None
    interval_min: Literal[15, 30, 60] = 15
    months: list[int] | None = None
    ratchet_pct: Decimal | None = Field(None, ge=0, le=100)
    ratchet_pct_by_month: list[Decimal] | None = Field(None, min_length=12, max_length=12)
    ratchet_months: int = Field(11, ge=1, le=36)

    _listify = field_validator("rates", mode="before")(EnergySpec._listify.__func__)  # type: ignore[attr-defined]

    @property
    def ratcheted(self) -> bool:
        """True when the charge has a ratchet (one percent or one per month)."""
        return self.ratchet_pct is not None or self.ratchet_pct_by_month is not None

    @model_validator(mode="after")
    def _check(self) -> DemandSpec:
        if self.ratchet_pct is not None and self.ratchet_pct_by_month is not None:
            raise ValueError(f"demand {self.code}: give ratchet_pct or ratchet_pct_by_month, not both")
        if any(not 0 <= p <= 100 for p in self.ratchet_pct_by_month or []):
            raise ValueError(f"demand {self.code}.ratchet_pct_by_month: percents 0..100")
        if self.ratcheted and self.tou is not None and not _month_only(self.tou):
            raise ValueError(
                f"demand {self.code}: a ratchet applies to a monthly peak only (tou unset, or a schedule by month)"
            )
        for period, rates in self.rates.items():
            if len(rates) not in (1, len(self.tier_limits_kw) + 1):
                raise ValueError(f"demand {self.code}.rates.{period}: 1 rate or one per tier")
        if self.months is not None and any(not 1 <= m <= 12 for m in self.months):
            raise ValueError(f"demand {self.code}.months: 1..12")
        return self


def _month_only(tou: TouSpec | Literal["energy"]) -> bool:
    """True for matrices whose period depends on the month only (every hour and day type of a month alike)."""
    if not isinstance(tou, TouSpec) or tou.weekday is None:
        return False
    rows = [m for m in (tou.weekday, tou.weekend, tou.holiday) if m is not None]
    return all(len(set(rows[0][k])) == 1 and all(m[k] == rows[0][k] for m in rows) for k in range(12))


class FixedSpec(_Model):
    """A fixed charge per month (prorated by days for partial periods) or per day."""

    code: str = "fixed"
    description: str = "Customer charge"
    amount: Decimal
    per: Literal["month", "day"] = "month"


class MinimumSpec(_Model):
    """Minimum charge: energy + demand + fixed + export lines are topped up to it (prorated like fixed charges)."""

    amount: Decimal
    per: Literal["month", "day"] = "month"


class TaxSpec(_Model):
    """A tax or surcharge: ``percent`` of the sum of the chosen lines (categories or line codes)."""

    code: str
    description: str = "Tax"
    percent: Decimal
    applies_to: list[str] = Field(default_factory=lambda: ["energy", "demand", "fixed", "minimum"])


class ExportSpec(_Model):
    """Exported energy: ``net_metering`` credits it at the period's first-tier import rate, ``credit`` at ``rate``."""

    mode: Literal["none", "net_metering", "credit"] = "none"
    rate: Decimal | None = None
    rates: dict[str, Decimal] = Field(default_factory=dict, description="credit rate per TOU period")

    @model_validator(mode="after")
    def _rate(self) -> ExportSpec:
        if self.mode == "credit" and self.rate is None and not self.rates:
            raise ValueError("export.mode = credit needs export.rate or export.rates")
        return self


class TariffSpec(_Model):
    """One version of a tariff as written in a file or stored in amiflow.tariffs."""

    id: str = Field(min_length=1, max_length=200)
    version: int = Field(1, ge=1)
    name: str = ""
    currency: str = "USD"
    effective_from: date
    effective_to: date | None = None
    source: Literal["amiflow", "urdb"] = "amiflow"
    source_ref: str | None = None
    seasons: dict[str, list[str | int]] = Field(default_factory=dict)
    tou: TouSpec
    holidays: HolidaySpec = HolidaySpec()
    energy: EnergySpec
    demand: list[DemandSpec] = Field(default_factory=list)
    fixed: list[FixedSpec] = Field(default_factory=list)
    minimum: MinimumSpec | None = None
    taxes: list[TaxSpec] = Field(default_factory=list)
    export: ExportSpec = ExportSpec()
    unit: Literal["kWh", "MWh", "Wh", "m3"] = Field("kWh", description="unit of the energy rates and tier limits")
    channel: str | None = Field(None, description="interval channel billed (default 1-0:1.29.0; m3: 8-0:1.29.0)")

    @property
    def usage_channel(self) -> str:
        """The interval channel (OBIS ``A-B:C.29.E``) the billing run reads for this tariff."""
        return self.channel or ("8-0:1.29.0" if self.unit == "m3" else "1-0:1.29.0")

    @model_validator(mode="after")
    def _usage(self) -> TariffSpec:
        if self.channel is not None and not _INTERVAL_CHANNEL.match(self.channel):
            raise ValueError(f"channel {self.channel!r}: expected an interval channel such as 6-0:1.29.0")
        if self.unit != "kWh" and (self.demand or self.export.mode != "none"):
            raise ValueError(f"unit {self.unit}: demand charges and export credits need unit kWh")
        return self

    @model_validator(mode="after")
    def _dates(self) -> TariffSpec:
        if self.effective_to is not None and self.effective_to <= self.effective_from:
            raise ValueError("effective_to must be after effective_from")
        codes = [d.code for d in self.demand] + [f.code for f in self.fixed] + [t.code for t in self.taxes]
        if len(codes) != len(set(codes)):
            raise ValueError("line codes of demand, fixed and taxes must be unique")
        return self

    def covers(self, start: date, end: date) -> bool:
        """True when [start, end) lies inside this version's effective dates."""
        return start >= self.effective_from and (self.effective_to is None or end <= self.effective_to)


def select_version(versions: Sequence[TariffSpec], start: date, end: date) -> TariffSpec:
    """The version effective for the whole period [start, end); RatingError if none (or a change mid-period)."""
    for spec in sorted(versions, key=lambda s: (s.effective_from, s.version), reverse=True):
        if spec.covers(start, end):
            return spec
    ids = sorted({s.id for s in versions})
    raise RatingError(
        f"no version of tariff {', '.join(ids)} is effective for the whole period {start}..{end} "
        "(rating.tariff_change.tariff_parts splits a period at a change)"
    )
