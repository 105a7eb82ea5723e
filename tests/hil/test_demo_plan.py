"""The demo's pure parts: which month it simulates, which tariff a meter gets, the summary text."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from amiflow_app.demo.plan import COLLECTIONS_DAYS, Summary, format_summary, plan_demo, tariff_for
from billing_bridge.policy import NOT_YET_RULES


@pytest.mark.parametrize("today", [date(2026, 11, 26), date(2026, 1, 3), date(2027, 3, 1), date(2026, 12, 31)])
def test_the_month_and_its_collections_fit_before_today(today: date) -> None:
    plan = plan_demo(today, 30)
    assert plan.period.day == 1
    assert plan.period_end > plan.period
    assert (plan.period_end + timedelta(days=COLLECTIONS_DAYS)) <= today
    # the latest such month: the next one would not fit
    nxt = plan_demo(plan.period_end + timedelta(days=COLLECTIONS_DAYS + 40), 30)
    assert nxt.period > plan.period
    assert plan.sim_start.tzinfo is UTC
    assert plan.sim_start + timedelta(days=plan.days) == datetime(
        plan.period_end.year, plan.period_end.month, 1, tzinfo=UTC
    )


def test_days_are_clamped_to_the_month_and_end_at_its_end() -> None:
    plan = plan_demo(date(2026, 11, 26), 45)
    assert plan.period == date(2026, 9, 1) and plan.days == 30
    short = plan_demo(date(2026, 11, 26), 7)
    assert short.days == 7 and short.sim_start == datetime(2026, 9, 24, tzinfo=UTC)
    with pytest.raises(ValueError):
        plan_demo(date(2026, 11, 26), 0)


def test_tariffs_follow_the_load_model() -> None:
    assert tariff_for("commercial", False) == tariff_for("commercial", True) == "com-tou-demand"
    assert tariff_for("residential", True) == "res-nem-tou"
    assert tariff_for("residential", False) == "res-tou-tiers"


def test_summary_says_whether_the_accounting_holds_and_never_invents_poll_figures() -> None:
    s = Summary(
        period="2026-09",
        readings_published=10,
        readings_stored=7,
        readings_duplicate=2,
        readings_quarantined=1,
        not_built=["polled dlms meters: simulators.dlms not in this build"],
    )
    text = format_summary(s)
    assert "published 10 = stored 7 + duplicates 2 + quarantined 1 (holds)" in text
    assert "polls ok/failed: not measured" in text
    assert "not built yet: polled dlms meters" in text
    s.readings_stored = 6
    assert "(DOES NOT HOLD)" in format_summary(s)
    assert set(s.to_json()) >= {"readings_published", "bills_issued", "timeline", "elapsed_s"}


def test_not_yet_rules_are_the_ladder_and_threshold_rules() -> None:
    assert {"debt_threshold", "days_past_due", "notice_ladder", "notice_period"} == NOT_YET_RULES
