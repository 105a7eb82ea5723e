"""Jurisdiction rule sets as data: ``rulesets/*.toml`` (or any file given by path), validated at the edge.

A rule set file has one table per concern; see ``rulesets/us_tx.toml`` for every key with its meaning. A wrong file
raises :class:`~amiflow.errors.ConfigError` naming the file and the key. :func:`holidays_for` turns the rule set's
country/subdivision into the holiday dates the (pure) engine takes as input.
"""

from __future__ import annotations

from datetime import date, time
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from amiflow.errors import ConfigError
from billing_bridge.policy.model import Blackout, LadderRung, RuleSet
from billing_bridge.toml_files import read_bundled_or_file, validate_toml

__all__ = ["available_rulesets", "holidays_for", "load_ruleset", "parse_ruleset"]

_Frozen = ConfigDict(extra="forbid", frozen=True)
MonthDay = Annotated[str, Field(pattern=r"^(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")]


class _Debt(BaseModel):
    model_config = _Frozen
    min_amount: Decimal = Field(ge=0)
    min_days_past_due: int = Field(ge=0)
    notice_period_days: int = Field(ge=0)
    dispute_blocks: bool = True
    payment_plan_blocks: bool = True
    required_notices: list[str]


class _Calendar(BaseModel):
    model_config = _Frozen
    allowed_weekdays: list[int] = Field(min_length=1)
    hours: tuple[time, time]
    block_holidays: bool = True
    block_day_before_holiday: bool = True

    @field_validator("allowed_weekdays")
    @classmethod
    def _weekdays(cls, v: list[int]) -> list[int]:
        if not all(0 <= d <= 6 for d in v):
            raise ValueError("weekdays are 0 (Monday) .. 6 (Sunday)")
        return v


class _Blackout(BaseModel):
    model_config = _Frozen
    name: str
    start: MonthDay
    end: MonthDay


class _Weather(BaseModel):
    model_config = _Frozen
    freeze_below_c: float | None = None
    heat_above_c: float | None = None
    required: bool = True


class _Limits(BaseModel):
    model_config = _Frozen
    max_estimated_share: float | None = Field(None, ge=0, le=1)
    max_per_hour: int | None = Field(None, ge=0)
    max_per_feeder_per_hour: int | None = Field(None, ge=0)


class _Rung(BaseModel):
    model_config = _Frozen
    type: str
    days_after_due: int = Field(ge=0)


class _Reminders(BaseModel):
    model_config = _Frozen
    payment_terms_days: int = Field(ge=0)
    ladder: list[_Rung] = Field(min_length=1)
    high_risk_score: float = Field(60.0, ge=0, le=100)
    high_risk_advance_days: int = Field(2, ge=0)


class _Prepaid(BaseModel):
    model_config = _Frozen
    low_balance: list[Decimal] = []
    required_notices: list[str] = ["low_balance"]
    notice_period_hours: int = Field(24, ge=0)


class _File(BaseModel):
    model_config = _Frozen
    id: str = Field(pattern=r"^[a-z0-9_.-]+$")
    version: str
    name: str
    country: str = Field(pattern=r"^[A-Z]{2}$")
    subdivision: str | None = None
    timezone: str
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    protected_categories: list[str]
    debt: _Debt
    calendar: _Calendar
    blackouts: list[_Blackout] = []
    weather: _Weather
    limits: _Limits
    reminders: _Reminders
    prepaid: _Prepaid = _Prepaid()

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v


def _md(s: str) -> tuple[int, int]:
    m, d = s.split("-")
    return int(m), int(d)


def parse_ruleset(text: str, where: str = "rule set") -> RuleSet:
    """Parse and validate rule set TOML text; ConfigError names ``where`` and the first bad key."""
    f = validate_toml(_File, text, where)
    rungs = tuple(LadderRung(r.type, r.days_after_due) for r in f.reminders.ladder)
    return RuleSet(
        id=f.id,
        version=f.version,
        name=f.name,
        country=f.country,
        subdivision=f.subdivision,
        timezone=f.timezone,
        currency=f.currency,
        min_debt=f.debt.min_amount,
        min_days_past_due=f.debt.min_days_past_due,
        notice_period_days=f.debt.notice_period_days,
        dispute_blocks=f.debt.dispute_blocks,
        payment_plan_blocks=f.debt.payment_plan_blocks,
        required_notices=tuple(f.debt.required_notices),
        protected_categories=tuple(f.protected_categories),
        allowed_weekdays=tuple(sorted(set(f.calendar.allowed_weekdays))),
        hours=f.calendar.hours,
        block_holidays=f.calendar.block_holidays,
        block_day_before_holiday=f.calendar.block_day_before_holiday,
        blackouts=tuple(Blackout(b.name, _md(b.start), _md(b.end)) for b in f.blackouts),
        freeze_below_c=f.weather.freeze_below_c,
        heat_above_c=f.weather.heat_above_c,
        weather_required=f.weather.required,
        max_estimated_share=f.limits.max_estimated_share,
        max_per_hour=f.limits.max_per_hour,
        max_per_feeder_per_hour=f.limits.max_per_feeder_per_hour,
        ladder=rungs,
        payment_terms_days=f.reminders.payment_terms_days,
        high_risk_score=f.reminders.high_risk_score,
        high_risk_advance_days=f.reminders.high_risk_advance_days,
        prepaid_low_balance=tuple(sorted(f.prepaid.low_balance, reverse=True)),
        prepaid_required_notices=tuple(f.prepaid.required_notices),
        prepaid_notice_period_hours=f.prepaid.notice_period_hours,
    )


def available_rulesets() -> tuple[str, ...]:
    """The ids of the bundled rule sets."""
    folder = resources.files("billing_bridge.policy") / "rulesets"
    return tuple(sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")))


def load_ruleset(name_or_path: str | Path) -> RuleSet:
    """A bundled rule set by id (``us_tx``, ``eu_de``) or a TOML file by path."""
    found = read_bundled_or_file(name_or_path, "billing_bridge.policy", "rulesets", "rule set")
    if found is None:
        raise ConfigError(f"unknown rule set {name_or_path!r}; bundled: {', '.join(available_rulesets())}")
    return parse_ruleset(*found)


def holidays_for(ruleset: RuleSet, years: range | tuple[int, ...]) -> frozenset[date]:
    """The public holidays of the rule set's country/subdivision (the ``holidays`` package) in ``years``."""
    import holidays

    try:
        cal = holidays.country_holidays(ruleset.country, subdiv=ruleset.subdivision, years=list(years))
    except NotImplementedError as exc:
        raise ConfigError(f"rule set {ruleset.id}: no holiday calendar for {ruleset.country}: {exc}") from None
    return frozenset(cal.keys())
