"""An explainable arrears-risk score per account: a weighted sum of five documented features, no opaque model.

Each feature is scaled to 0..1 by a fixed, documented cap, multiplied by its weight; the score is the sum (0..100)
and the per-feature contributions are kept, so an operator sees why an account ranks where it does.

| feature | raw value | scaled as | weight |
|---|---|---|---|
| days_past_due | days since the oldest unpaid due date | min(days / 90, 1) | 30 |
| overdue_ratio | overdue amount / the account's typical (median) bill of 12 months | min(ratio / 3, 1) | 25 |
| late_payments_12m | debts of the last 12 months paid after their due date (or not yet) | min(n / 6, 1) | 20 |
| partial_payments_12m | debts of the last 12 months partly (not fully) paid by their due date | min(n / 6, 1) | 10 |
| consumption_change | kWh of the last 90 days vs the same days a year earlier - 1 | clip(change, 0, 1) | 15 |

A consumption *increase* raises the risk (bills grow faster than the customer's habit); a drop does not lower it
below zero. Unknown features (no history, no last-year data) contribute 0 and are reported as ``None``.
The score orders collection work, and accounts at or above the rule set's ``high_risk_score`` get their reminders
``high_risk_advance_days`` earlier.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import psycopg.errors

from billing_bridge.arrears import Arrears, DebtHistory

log = logging.getLogger(__name__)

__all__ = ["CAPS", "WEIGHTS", "RiskFeatures", "RiskScore", "consumption_change", "features_for", "score"]

#: Weight of each feature (the scores add up to at most 100).
WEIGHTS: Mapping[str, float] = {
    "days_past_due": 30.0,
    "overdue_ratio": 25.0,
    "late_payments_12m": 20.0,
    "partial_payments_12m": 10.0,
    "consumption_change": 15.0,
}
#: The raw value at which a feature saturates (scaled value 1).
CAPS: Mapping[str, float] = {
    "days_past_due": 90.0,
    "overdue_ratio": 3.0,
    "late_payments_12m": 6.0,
    "partial_payments_12m": 6.0,
    "consumption_change": 1.0,
}


@dataclass(frozen=True, slots=True)
class RiskFeatures:
    """The raw feature values of one account (``None`` = unknown)."""

    days_past_due: int
    overdue_ratio: float | None
    late_payments_12m: int
    partial_payments_12m: int
    consumption_change: float | None


@dataclass(frozen=True, slots=True)
class RiskScore:
    """The score (0..100), each feature's contribution to it, and the raw features."""

    account: str
    score: float
    contributions: Mapping[str, float]
    features: RiskFeatures


def score(account: str, features: RiskFeatures, weights: Mapping[str, float] = WEIGHTS) -> RiskScore:
    """The weighted sum of the capped, scaled features."""
    contributions = {}
    for name, weight in weights.items():
        raw = getattr(features, name)
        scaled = 0.0 if raw is None else min(max(float(raw) / CAPS[name], 0.0), 1.0)
        contributions[name] = round(weight * scaled, 2)
    return RiskScore(account, round(sum(contributions.values()), 2), contributions, features)


def features_for(
    arrears: Arrears | None,
    history: Iterable[DebtHistory],
    typical_bill: Decimal | None,
    today: date,
    consumption: float | None,
) -> RiskFeatures:
    """The features of one account from its arrears, the last 12 months of paid/unpaid debts and consumption."""
    year_ago = today - timedelta(days=365)
    recent = [h for h in history if year_ago <= h.debt.due_date < today]
    overdue = arrears.overdue_amount if arrears else Decimal(0)
    ratio = float(overdue / typical_bill) if typical_bill else None
    return RiskFeatures(
        days_past_due=arrears.days_past_due if arrears else 0,
        overdue_ratio=ratio,
        late_payments_12m=sum(1 for h in recent if h.late),
        partial_payments_12m=sum(1 for h in recent if h.partial),
        consumption_change=consumption,
    )


def consumption_change(conn: psycopg.Connection[Any], today: date, days: int = 90) -> dict[str, float]:
    """Per account: (kWh of the last ``days`` / kWh of the same days a year earlier) - 1, from ``v_daily_energy``.

    Accounts without last year's data are left out (the feature is unknown for them), and so is everyone while the
    rollup behind the view has never been refreshed (plain PostgreSQL before the first ``refresh_rollups``).
    """
    try:
        with conn.transaction():
            rows = _consumption_rows(conn, today, days)
    except psycopg.errors.ObjectNotInPrerequisiteState:
        log.info("consumption_change unknown: the energy rollup has not been refreshed yet")
        return {}
    return {a: float(now) / float(then) - 1.0 for a, now, then in rows if now is not None and then and then > 0}


def _consumption_rows(conn: psycopg.Connection[Any], today: date, days: int) -> list[tuple[Any, ...]]:
    return conn.execute(
        """
        SELECT m.account,
               sum(e.kwh_import) FILTER (WHERE e.day > %(t)s::date - %(d)s AND e.day <= %(t)s::date),
               sum(e.kwh_import) FILTER (WHERE e.day > %(t)s::date - 365 - %(d)s AND e.day <= %(t)s::date - 365)
        FROM amiflow.v_daily_energy e JOIN amiflow.meters m ON m.name = e.meter
        WHERE m.account IS NOT NULL AND e.day > %(t)s::date - 365 - %(d)s
        GROUP BY m.account
        """,
        {"t": today, "d": days},
    ).fetchall()
