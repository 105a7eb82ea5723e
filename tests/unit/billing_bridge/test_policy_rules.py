"""The disconnect policy: each rule blocks alone, all clear allows, and no blocking rule ever lets one through."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amiflow.errors import ConfigError
from billing_bridge.policy import (
    RULES,
    Conditions,
    DisconnectCase,
    RuleSet,
    evaluate,
    holidays_for,
    load_ruleset,
    parse_ruleset,
)

US = load_ruleset("us_tx")
# Tuesday 2026-03-10 15:00 UTC = 10:00 in Chicago (CDT): a plain working day, mid-morning, mild weather.
NOW = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)
HOLIDAYS = holidays_for(US, (2026,))


def clear_case(**kw: Any) -> DisconnectCase:
    base = DisconnectCase(
        account="A1",
        meter="M1",
        debt_ref="stmt:A1:2026-02-01",
        overdue_amount=Decimal("250.00"),
        days_past_due=37,
        notices_sent={
            "payment_reminder": datetime(2026, 1, 2, 15, tzinfo=UTC),
            "disconnect_warning": datetime(2026, 1, 6, 15, tzinfo=UTC),
            "disconnect_scheduled": datetime(2026, 1, 8, 15, tzinfo=UTC),
        },
        feeder="F7",
        estimated_share=0.05,
    )
    return dataclasses.replace(base, **kw)


def clear_conditions(**kw: Any) -> Conditions:
    base = Conditions(now=NOW, forecast_min_c=8.0, forecast_max_c=21.0, holidays=HOLIDAYS)
    return dataclasses.replace(base, **kw)


def test_all_clear_allows_and_lists_every_rule() -> None:
    d = evaluate(US, clear_case(), clear_conditions())
    assert d.allowed, d.as_json()
    assert d.ruleset_id == "us_tx" and d.ruleset_version == "2026.1"
    assert len(d.deciding_rules) == len(RULES)
    assert d.blocking == ()


# (rule that must block, case changes, condition changes)
BLOCKING_CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("debt_threshold", {"overdue_amount": Decimal("49.99")}, {}),
    ("days_past_due", {"days_past_due": 19}, {}),
    ("open_dispute", {"open_dispute": True}, {}),
    ("payment_plan", {"payment_plan": "good_standing"}, {}),
    (
        "notice_ladder",
        {
            "notices_sent": {
                "payment_reminder": NOW - timedelta(days=34),
                "disconnect_scheduled": NOW - timedelta(days=23),
            }
        },
        {},
    ),
    (
        "notice_period",
        {
            "notices_sent": {
                "payment_reminder": NOW - timedelta(days=34),
                "disconnect_warning": NOW - timedelta(days=27),
                "disconnect_scheduled": NOW - timedelta(days=9, hours=23),
            }
        },
        {},
    ),
    ("protected_customer", {"protected": frozenset({"life_support"})}, {}),
    ("protected_customer", {"protected": frozenset({"medical", "other"})}, {}),
    ("weekend", {}, {"now": datetime(2026, 3, 14, 15, 0, tzinfo=UTC)}),  # Saturday
    ("weekend", {}, {"now": datetime(2026, 3, 13, 15, 0, tzinfo=UTC)}),  # Friday: the day before a weekend
    (
        "public_holiday",
        {},
        {"now": datetime(2026, 1, 19, 15, 0, tzinfo=UTC), "holidays": frozenset({date(2026, 1, 19)})},
    ),
    ("day_before_holiday", {}, {"holidays": frozenset({date(2026, 3, 11)})}),
    ("outside_hours", {}, {"now": datetime(2026, 3, 10, 12, 59, tzinfo=UTC)}),  # 07:59 local
    ("outside_hours", {}, {"now": datetime(2026, 3, 10, 21, 0, tzinfo=UTC)}),  # 16:00 local (end exclusive)
    ("weather_freeze", {}, {"forecast_min_c": -0.5}),
    ("weather_heat", {}, {"forecast_max_c": 35.5}),
    ("weather_unknown", {}, {"forecast_min_c": None}),
    ("estimated_bill", {"estimated_share": 0.51}, {}),
    ("rate_limit_hour", {}, {"disconnects_last_hour": 50}),
    ("rate_limit_feeder", {}, {"feeder_disconnects_last_hour": 10}),
]


@pytest.mark.parametrize(("rule", "case_kw", "cond_kw"), BLOCKING_CASES, ids=[c[0] for c in BLOCKING_CASES])
def test_each_rule_blocks_alone(rule: str, case_kw: dict[str, Any], cond_kw: dict[str, Any]) -> None:
    d = evaluate(US, clear_case(**case_kw), clear_conditions(**cond_kw))
    assert not d.allowed
    assert d.blocking == (rule,), d.as_json()
    assert d.deciding_rules == (rule,)


def test_blackout_blocks_alone_on_a_working_day() -> None:
    # 2026-12-29 is a Tuesday inside the us_tx year-end blackout, not a holiday nor the day before one.
    d = evaluate(US, clear_case(), clear_conditions(now=datetime(2026, 12, 29, 15, 0, tzinfo=UTC)))
    assert d.blocking == ("blackout_period",)


def test_bundled_holiday_calendar_blocks_real_holidays() -> None:
    # 2026-07-03 (Fri) is the observed Independence Day in the US calendar; 2026-11-26 (Thu) Thanksgiving.
    thanksgiving = evaluate(US, clear_case(), clear_conditions(now=datetime(2026, 11, 26, 16, 0, tzinfo=UTC)))
    assert "public_holiday" in thanksgiving.blocking
    wednesday_before = evaluate(US, clear_case(), clear_conditions(now=datetime(2026, 11, 25, 16, 0, tzinfo=UTC)))
    assert wednesday_before.blocking == ("day_before_holiday",)


def test_boundaries_that_must_not_block() -> None:
    edge = clear_case(
        overdue_amount=Decimal("50.00"),
        days_past_due=20,
        estimated_share=0.5,
        notices_sent={
            "payment_reminder": NOW - timedelta(days=20),
            "disconnect_warning": NOW - timedelta(days=12),
            "disconnect_scheduled": NOW - timedelta(days=10),
        },
        protected=frozenset({"not_a_protected_category"}),
        payment_plan="defaulted",
    )
    cond = clear_conditions(forecast_min_c=0.0, forecast_max_c=35.0, disconnects_last_hour=49)
    assert evaluate(US, edge, cond).allowed


def test_eu_ruleset_differs_by_data_only() -> None:
    eu = load_ruleset("eu_de")
    # 09:00 UTC = 10:00 Berlin on Tuesday 2026-03-10; 30 days past due is too early for the EU-like set.
    now = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
    case = clear_case(days_past_due=30, overdue_amount=Decimal("150"))
    d = evaluate(eu, case, clear_conditions(now=now, holidays=holidays_for(eu, (2026,))))
    assert d.blocking == ("days_past_due",)
    later = dataclasses.replace(case, days_past_due=45)
    assert evaluate(eu, later, clear_conditions(now=now)).allowed
    assert evaluate(eu, later, clear_conditions(now=datetime(2026, 12, 15, 9, 0, tzinfo=UTC))).blocking == (
        "blackout_period",
    )


def test_prepaid_uses_zero_balance_notice_period() -> None:
    case = clear_case(
        prepaid=True,
        days_past_due=0,
        overdue_amount=Decimal("60"),
        notices_sent={"low_balance": NOW - timedelta(days=3)},
        zero_since=NOW - timedelta(hours=23),
    )
    assert evaluate(US, case, clear_conditions()).blocking == ("notice_period",)
    assert evaluate(US, dataclasses.replace(case, zero_since=NOW - timedelta(hours=25)), clear_conditions()).allowed


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        evaluate(US, clear_case(), clear_conditions(now=datetime(2026, 3, 10, 10, 0)))


def test_bad_ruleset_file_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"calendar\.allowed_weekdays"):
        parse_ruleset(
            (load_ruleset_text()).replace("allowed_weekdays = [0, 1, 2, 3]", "allowed_weekdays = [0, 9]"), "x.toml"
        )
    with pytest.raises(ConfigError, match="unknown rule set"):
        load_ruleset("atlantis")


def load_ruleset_text() -> str:
    from importlib import resources

    return (resources.files("billing_bridge.policy") / "rulesets" / "us_tx.toml").read_text()


# -- property: no disconnect is ever allowed while any blocking condition holds ---------------------------------

_notice_times = st.one_of(st.none(), st.integers(min_value=-5, max_value=60).map(lambda d: NOW - timedelta(days=d)))


@st.composite
def cases(draw: st.DrawFn) -> tuple[RuleSet, DisconnectCase, Conditions]:
    rs = draw(st.sampled_from([US, load_ruleset("eu_de")]))
    sent = {t: draw(_notice_times) for t in ("payment_reminder", "disconnect_warning", "disconnect_scheduled")}
    case = DisconnectCase(
        account="A",
        meter="M",
        debt_ref="d",
        overdue_amount=Decimal(draw(st.integers(min_value=0, max_value=100_000))) / 100,
        days_past_due=draw(st.integers(min_value=0, max_value=120)),
        notices_sent={k: v for k, v in sent.items() if v is not None},
        protected=frozenset(draw(st.lists(st.sampled_from(["life_support", "medical", "pregnancy", "none"])))),
        open_dispute=draw(st.booleans()),
        payment_plan=draw(st.sampled_from(["none", "good_standing", "defaulted"])),
        estimated_share=draw(st.floats(min_value=0, max_value=1)),
        feeder="F",
    )
    now = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=draw(st.integers(min_value=0, max_value=525_600)))
    cond = Conditions(
        now=now,
        forecast_min_c=draw(st.one_of(st.none(), st.floats(min_value=-30, max_value=45))),
        forecast_max_c=draw(st.one_of(st.none(), st.floats(min_value=-30, max_value=45))),
        holidays=holidays_for(rs, (2026, 2027)),
        disconnects_last_hour=draw(st.integers(min_value=0, max_value=80)),
        feeder_disconnects_last_hour=draw(st.integers(min_value=0, max_value=15)),
    )
    return rs, case, cond


def _independent_blockers(rs: RuleSet, c: DisconnectCase, k: Conditions) -> list[str]:
    """The blocking conditions recomputed from first principles (not through the engine's rule functions)."""
    from zoneinfo import ZoneInfo

    local = k.now.astimezone(ZoneInfo(rs.timezone))
    out = []
    if c.overdue_amount < rs.min_debt:
        out.append("debt")
    if c.days_past_due < rs.min_days_past_due:
        out.append("days")
    if c.open_dispute:
        out.append("dispute")
    if c.payment_plan == "good_standing":
        out.append("plan")
    if any(t not in c.notices_sent or c.notices_sent[t] > k.now for t in rs.required_notices):
        out.append("ladder")
    sched = c.notices_sent.get("disconnect_scheduled")
    if sched is None or (k.now - sched) < timedelta(days=rs.notice_period_days):
        out.append("period")
    if c.protected & set(rs.protected_categories):
        out.append("protected")
    if local.weekday() not in rs.allowed_weekdays:
        out.append("weekday")
    if local.date() in k.holidays or (local.date() + timedelta(days=1)) in k.holidays:
        out.append("holiday")
    if not (rs.hours[0] <= local.time().replace(tzinfo=None) < rs.hours[1]):
        out.append("hours")
    if any(b.covers(local.date()) for b in rs.blackouts):
        out.append("blackout")
    if k.forecast_min_c is None or k.forecast_max_c is None:
        out.append("weather_unknown")
    elif k.forecast_min_c < (rs.freeze_below_c or -999) or k.forecast_max_c > (rs.heat_above_c or 999):
        out.append("weather")
    if rs.max_estimated_share is not None and c.estimated_share > rs.max_estimated_share:
        out.append("estimated")
    if k.disconnects_last_hour >= (rs.max_per_hour or 10**9):
        out.append("rate")
    if k.feeder_disconnects_last_hour >= (rs.max_per_feeder_per_hour or 10**9):
        out.append("feeder")
    return out


@settings(max_examples=400, deadline=None)
@given(cases())
def test_never_allowed_while_a_blocking_condition_holds(sample: tuple[RuleSet, DisconnectCase, Conditions]) -> None:
    rs, case, cond = sample
    decision = evaluate(rs, case, cond)
    blockers = _independent_blockers(rs, case, cond)
    assert decision.allowed == (not blockers), (blockers, decision.as_json())
    if not decision.allowed:
        assert decision.deciding_rules and set(decision.deciding_rules) == set(decision.blocking)
