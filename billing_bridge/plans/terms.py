"""Installment plan terms as data: ``terms/*.toml`` next to the rule sets (same ids), validated at the edge.

A terms file says who may get a plan and how it runs (see ``terms/us_tx.toml`` for every key): the minimum overdue
balance, the most installments, the minimum down payment (a percent of the balance and an amount), how many broken
plans in a lookback window make an account ineligible, the installment interval, the default and latest first due
date, the grace period and whether new bills must be paid during the plan. :func:`check_eligibility` is pure: it
raises :class:`PlanRefused` with a stable ``reason`` code and a sentence saying what to change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_CEILING, Decimal
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from amiflow.errors import BillingError, ConfigError
from billing_bridge.toml_files import read_bundled_or_file, validate_toml

__all__ = ["PlanRefused", "PlanRequest", "PlanTerms", "check_eligibility", "load_plan_terms", "minimum_down_payment"]

_CENT = Decimal("0.01")
_Frozen = ConfigDict(extra="forbid", frozen=True)


class PlanRefused(BillingError):
    """A plan cannot be made for the account as asked; nothing was stored. ``reason`` is a stable code:
    prepaid, plan_active, nothing_overdue, below_minimum, installments, down_payment_small, down_payment_large,
    start, broken_recently."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class _Eligibility(BaseModel):
    model_config = _Frozen
    min_overdue: Decimal = Field(ge=0)
    max_installments: int = Field(ge=1, le=120)
    min_down_payment_percent: Decimal = Field(ge=0, lt=100)
    min_down_payment: Decimal = Field(Decimal(0), ge=0)
    broken_plans_lookback_days: int = Field(365, ge=0)
    max_broken_plans: int = Field(1, ge=1)


class _Schedule(BaseModel):
    model_config = _Frozen
    interval_months: int = Field(1, ge=1, le=12)
    first_due_after_days: int = Field(ge=0)
    max_start_days: int = Field(ge=0)
    grace_days: int = Field(ge=0)
    current_bills_required: bool = True


class _File(BaseModel):
    model_config = _Frozen
    id: str = Field(pattern=r"^[a-z0-9_.-]+$")
    version: str
    name: str
    eligibility: _Eligibility
    schedule: _Schedule


@dataclass(frozen=True, slots=True)
class PlanTerms:
    """One jurisdiction's plan terms (see the module docstring and ``terms/us_tx.toml``)."""

    id: str
    version: str
    name: str
    min_overdue: Decimal
    max_installments: int
    min_down_payment_percent: Decimal
    min_down_payment: Decimal
    broken_plans_lookback_days: int
    max_broken_plans: int
    interval_months: int
    first_due_after_days: int
    max_start_days: int
    grace_days: int
    current_bills_required: bool


@dataclass(frozen=True, slots=True)
class PlanRequest:
    """What is asked and what is known about the account on ``today`` (local date)."""

    account: str
    overdue: Decimal
    installments: int
    down_payment: Decimal | None
    first_due: date | None
    today: date
    prepaid: bool = False
    active_plan: int | None = None
    broken_recently: int = 0


def _parse(text: str, where: str) -> PlanTerms:
    f = validate_toml(_File, text, where)
    e, s = f.eligibility, f.schedule
    return PlanTerms(
        f.id, f.version, f.name, e.min_overdue, e.max_installments, e.min_down_payment_percent, e.min_down_payment,
        e.broken_plans_lookback_days, e.max_broken_plans, s.interval_months, s.first_due_after_days, s.max_start_days,
        s.grace_days, s.current_bills_required,
    )  # fmt: skip


def load_plan_terms(name_or_path: str | Path) -> PlanTerms:
    """The bundled terms of a rule set id (``us_tx``, ``eu_de``) or a TOML file by path; ConfigError otherwise."""
    found = read_bundled_or_file(name_or_path, "billing_bridge.plans", "terms", "plan terms")
    if found is None:
        raise ConfigError(f"no installment plan terms for rule set {name_or_path!r} (billing_bridge/plans/terms/)")
    return _parse(*found)


def minimum_down_payment(terms: PlanTerms, overdue: Decimal) -> Decimal:
    """The smallest down payment the terms accept: the percent of the balance rounded up to the cent, at least the
    minimum amount, never the whole balance."""
    pct = (overdue * terms.min_down_payment_percent / 100).quantize(_CENT, ROUND_CEILING)
    return min(max(pct, terms.min_down_payment), max(overdue - _CENT, Decimal(0)))


def check_eligibility(terms: PlanTerms, r: PlanRequest) -> tuple[Decimal, date]:
    """The down payment and first due date of the plan asked for, or PlanRefused saying why not."""
    who = f"account {r.account}"
    if r.prepaid:
        raise PlanRefused("prepaid", f"{who} is prepaid: its credit is topped up, not paid in installments")
    if r.active_plan is not None:
        raise PlanRefused("plan_active", f"{who} already has plan {r.active_plan} running")
    if r.overdue <= 0:
        raise PlanRefused("nothing_overdue", f"{who} has nothing overdue on {r.today}")
    if r.overdue < terms.min_overdue:
        raise PlanRefused("below_minimum", f"{who} owes {r.overdue}, below the plan minimum {terms.min_overdue}")
    if not 1 <= r.installments <= terms.max_installments:
        raise PlanRefused("installments", f"{r.installments} installments: give 1 to {terms.max_installments}")
    if r.broken_recently >= terms.max_broken_plans:
        raise PlanRefused(
            "broken_recently",
            f"{who} broke {r.broken_recently} plan(s) in the last {terms.broken_plans_lookback_days} days"
            f" (limit {terms.max_broken_plans})",
        )
    least = minimum_down_payment(terms, r.overdue)
    down = least if r.down_payment is None else r.down_payment
    if down != down.quantize(_CENT) or down < least:
        raise PlanRefused("down_payment_small", f"down payment {down}: at least {least} (in cents)")
    if down >= r.overdue:
        raise PlanRefused("down_payment_large", f"down payment {down} covers the whole balance {r.overdue}: pay it")
    first = r.first_due or r.today + timedelta(days=terms.first_due_after_days)
    if not r.today < first <= r.today + timedelta(days=terms.max_start_days):
        latest = r.today + timedelta(days=terms.max_start_days)
        raise PlanRefused("start", f"first installment on {first}: give a day after {r.today}, at the latest {latest}")
    return down, first
