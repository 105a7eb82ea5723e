"""The disconnect policy's values: a rule set (jurisdiction data), one case to decide, and the decision.

Everything here is a frozen value: the engine (:mod:`billing_bridge.policy.engine`) is a pure function of a
:class:`RuleSet`, a :class:`DisconnectCase` and a :class:`Conditions` (the caller's ``now``, temperatures, holidays and
recent disconnect counts), so a decision can be replayed from its recorded inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

__all__ = [
    "Blackout",
    "Conditions",
    "Decision",
    "DisconnectCase",
    "LadderRung",
    "RuleResult",
    "RuleSet",
]


@dataclass(frozen=True, slots=True)
class LadderRung:
    """A reminder rung: notice ``type`` sent ``days_after_due`` days after the due date (earlier for high risk)."""

    type: str
    days_after_due: int


@dataclass(frozen=True, slots=True)
class Blackout:
    """A yearly period (inclusive month/day bounds, may wrap the new year) with no disconnects."""

    name: str
    start: tuple[int, int]
    end: tuple[int, int]

    def covers(self, day: date) -> bool:
        md = (day.month, day.day)
        if self.start <= self.end:
            return self.start <= md <= self.end
        return md >= self.start or md <= self.end


@dataclass(frozen=True, slots=True)
class RuleSet:
    """One jurisdiction's rules, loaded from ``rulesets/*.toml``; ``None`` thresholds switch that check off."""

    id: str
    version: str
    name: str
    country: str
    subdivision: str | None
    timezone: str
    currency: str
    # debt eligibility
    min_debt: Decimal
    min_days_past_due: int
    notice_period_days: int
    dispute_blocks: bool
    payment_plan_blocks: bool
    required_notices: tuple[str, ...]
    # protection
    protected_categories: tuple[str, ...]
    # calendar
    allowed_weekdays: tuple[int, ...]
    hours: tuple[time, time]
    block_holidays: bool
    block_day_before_holiday: bool
    blackouts: tuple[Blackout, ...]
    # weather
    freeze_below_c: float | None
    heat_above_c: float | None
    weather_required: bool
    # bill quality
    max_estimated_share: float | None
    # rate limits
    max_per_hour: int | None
    max_per_feeder_per_hour: int | None
    # reminders
    ladder: tuple[LadderRung, ...]
    payment_terms_days: int
    high_risk_score: float
    high_risk_advance_days: int
    # prepaid
    prepaid_low_balance: tuple[Decimal, ...]
    prepaid_required_notices: tuple[str, ...]
    prepaid_notice_period_hours: int


@dataclass(frozen=True, slots=True)
class DisconnectCase:
    """One account (and meter) proposed for disconnection, as the arrears and notices stand.

    ``notices_sent`` maps a notice type to when it was sent for the debt behind the case. ``prepaid`` cases use the
    rule set's prepaid notices and notice period (hours after the balance reached zero). ``installment_plan`` names
    the account's amiflow installment plan in good standing (:mod:`billing_bridge.plans`), if any.
    """

    account: str
    meter: str | None
    debt_ref: str
    overdue_amount: Decimal
    days_past_due: int
    notices_sent: Mapping[str, datetime] = field(default_factory=dict)
    protected: frozenset[str] = frozenset()
    open_dispute: bool = False
    payment_plan: str = "none"
    estimated_share: float = 0.0
    feeder: str | None = None
    prepaid: bool = False
    zero_since: datetime | None = None
    installment_plan: str | None = None


@dataclass(frozen=True, slots=True)
class Conditions:
    """What the caller knows at decision time: ``now`` (aware), the forecast temperature range for the next day
    (``None`` = unknown), the public holidays, and the disconnects already issued in the last hour (total and for
    the case's feeder)."""

    now: datetime
    forecast_min_c: float | None
    forecast_max_c: float | None
    holidays: frozenset[date] = frozenset()
    disconnects_last_hour: int = 0
    feeder_disconnects_last_hour: int = 0


@dataclass(frozen=True, slots=True)
class RuleResult:
    """One rule's verdict: ``blocks`` True when it forbids the disconnect; ``detail`` says why, with the figures."""

    rule: str
    blocks: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one case. ``deciding_rules`` are the blocking rules, or every rule checked when allowed."""

    allowed: bool
    ruleset_id: str
    ruleset_version: str
    results: tuple[RuleResult, ...]

    @property
    def blocking(self) -> tuple[str, ...]:
        return tuple(r.rule for r in self.results if r.blocks)

    @property
    def deciding_rules(self) -> tuple[str, ...]:
        return self.blocking if not self.allowed else tuple(r.rule for r in self.results)

    def as_json(self) -> dict[str, Any]:
        """The decision as stored and sent with a ``disconnect_blocked`` notice."""
        return {
            "allowed": self.allowed,
            "ruleset": {"id": self.ruleset_id, "version": self.ruleset_version},
            "deciding_rules": list(self.deciding_rules),
            "results": [{"rule": r.rule, "blocks": r.blocks, "detail": r.detail} for r in self.results],
        }
