"""The arrears-risk score: documented features, caps and weights, explainable contributions."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from billing_bridge.arrears import Debt, DebtHistory, compute_arrears
from billing_bridge.risk import CAPS, WEIGHTS, RiskFeatures, features_for, score


def test_weights_sum_to_100_and_caps_saturate() -> None:
    assert sum(WEIGHTS.values()) == pytest.approx(100)
    worst = RiskFeatures(365, 10.0, 12, 12, 5.0)
    assert score("A", worst).score == pytest.approx(100)
    assert score("A", RiskFeatures(0, 0.0, 0, 0, -0.5)).score == 0  # a consumption drop does not go below 0


def test_contributions_explain_the_score() -> None:
    f = RiskFeatures(
        days_past_due=45, overdue_ratio=1.5, late_payments_12m=3, partial_payments_12m=0, consumption_change=None
    )
    s = score("A", f)
    assert s.contributions == {
        "days_past_due": 15.0,
        "overdue_ratio": 12.5,
        "late_payments_12m": 10.0,
        "partial_payments_12m": 0.0,
        "consumption_change": 0.0,
    }
    assert s.score == pytest.approx(sum(s.contributions.values()))
    assert set(CAPS) == set(WEIGHTS)


@pytest.mark.parametrize("field", list(WEIGHTS))
def test_each_feature_raises_the_score(field: str) -> None:
    base = RiskFeatures(10, 0.5, 1, 1, 0.1)
    worse = RiskFeatures(**{**{k: getattr(base, k) for k in WEIGHTS}, field: getattr(base, field) * 3})
    assert score("A", worse).score > score("A", base).score


def test_features_from_history() -> None:
    today = date(2026, 6, 1)
    debts = [Debt("A", f"b{m}", Decimal("100"), date(2026, m, 20)) for m in range(1, 6)]
    hist = [
        DebtHistory(debts[0], Decimal("100"), date(2026, 1, 18)),  # on time
        DebtHistory(debts[1], Decimal("30"), date(2026, 3, 1)),  # partial, late
        DebtHistory(debts[2], Decimal(0), date(2026, 4, 2)),  # late
        DebtHistory(debts[3], Decimal(0), None),  # unpaid
        DebtHistory(debts[4], Decimal(0), None),  # unpaid
        DebtHistory(Debt("A", "old", Decimal("100"), date(2024, 1, 1)), Decimal(0), None),  # > 12 months: ignored
    ]
    arrears = compute_arrears(debts[3:], [], today)["A"]
    f = features_for(arrears, hist, Decimal("100"), today, 0.25)
    assert f.days_past_due == 42 and f.overdue_ratio == pytest.approx(2.0)
    assert f.late_payments_12m == 4 and f.partial_payments_12m == 1
    assert f.consumption_change == 0.25
    unknown = features_for(None, [], None, today, None)
    assert unknown.overdue_ratio is None and score("A", unknown).score == 0
    assert datetime.now(UTC)  # features_for reads no clock: today is an argument
