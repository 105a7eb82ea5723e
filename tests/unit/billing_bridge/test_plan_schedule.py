"""Installment plans, the pure parts: an exact split, the stated allocation order, the standing rules, eligibility
as data, and the policy rule that a plan in good standing blocks with its own reason code."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_bridge.arrears import Debt, Payment
from billing_bridge.plans import (
    PlanRefused,
    PlanRequest,
    add_months,
    check_eligibility,
    load_plan_terms,
    split_balance,
    standing,
)
from billing_bridge.plans.terms import minimum_down_payment
from billing_bridge.policy import Conditions, DisconnectCase, evaluate, load_ruleset

D = Decimal
CREATED = date(2026, 3, 2)


def _pay(day: date, amount: str) -> Payment:
    return Payment("A", D(amount), datetime.combine(day, time(12), UTC))


def test_add_months_clips_to_the_month_end_and_restores_the_day() -> None:
    assert [add_months(date(2026, 1, 31), k) for k in range(4)] == [
        date(2026, 1, 31), date(2026, 2, 28), date(2026, 3, 31), date(2026, 4, 30)
    ]  # fmt: skip
    assert add_months(date(2026, 11, 15), 3) == date(2027, 2, 15)


def test_split_puts_the_remainder_on_the_last_installment() -> None:
    items = split_balance(D("100.00"), D("10.00"), 7, created_on=CREATED, first_due=date(2026, 4, 1))
    assert [i.number for i in items] == list(range(8))
    assert items[0].amount == D("10.00") and items[0].due_date == CREATED
    assert [i.amount for i in items[1:-1]] == [D("12.85")] * 6 and items[-1].amount == D("12.90")
    assert sum(i.amount for i in items) == D("100.00")
    assert [i.due_date for i in items[1:3]] == [date(2026, 4, 1), date(2026, 5, 1)]
    no_down = split_balance(D("0.05"), D(0), 5, created_on=CREATED, first_due=date(2026, 4, 1))
    assert [i.amount for i in no_down] == [D("0.01")] * 5


@given(
    st.decimals(min_value=D("0.02"), max_value=D("99999.99"), places=2),
    st.integers(min_value=1, max_value=24),
    st.floats(min_value=0, max_value=0.9),
)
def test_split_is_exact_for_any_balance(overdue: Decimal, n: int, share: float) -> None:
    down = (overdue * D(str(share))).quantize(D("0.01"))
    if (overdue - down) < D("0.01") * n:
        with pytest.raises(ValueError):
            split_balance(overdue, down, n, created_on=CREATED, first_due=date(2026, 4, 1))
        return
    items = split_balance(overdue, down, n, created_on=CREATED, first_due=date(2026, 4, 1))
    assert sum(i.amount for i in items) == overdue
    rest = items[1:] if down > 0 else items
    assert len(rest) == n and all(i.amount == rest[0].amount for i in rest[:-1])
    assert D(0) <= rest[-1].amount - rest[0].amount < D("0.01") * n


def test_split_refuses_what_is_not_a_plan() -> None:
    for args in ((D("0"), D(0), 3), (D("10.00"), D("10.00"), 2), (D("10.001"), D(0), 2), (D("10"), D(0), 0)):
        with pytest.raises(ValueError):
            split_balance(*args, created_on=CREATED, first_due=date(2026, 4, 1))


ITEMS = split_balance(D("300.00"), D("30.00"), 3, created_on=CREATED, first_due=date(2026, 4, 1))


def test_payments_fill_due_items_then_current_bills_then_prepay() -> None:
    bill = Debt("A", "bill:new", D("50.00"), date(2026, 3, 20))
    pays = [_pay(CREATED, "30.00"), _pay(date(2026, 3, 25), "100.00"), _pay(date(2026, 4, 1), "90.00")]
    s = standing(ITEMS, [bill], pays, date(2026, 4, 2), grace_days=5)
    # 30 -> down payment; 100 on 3-25: the bill (due 3-20) 50, then 50 prepaid to installment 1; 90 on 4-1: 40 to
    # the rest of installment 1 (due that day), 50 prepaid to installment 2
    assert [i.paid for i in s.items] == [D("30.00"), D("90.00"), D("50.00"), D(0)]
    assert [i.state for i in s.items] == ["paid", "paid", "open", "open"]
    assert s.current[0].paid == D("50.00") and s.current[0].state == "paid"
    assert s.state == "good_standing" and s.paid_to_plan == D("170.00") and s.credit == 0
    assert s.next_due is not None and s.next_due.ref == "2" and s.remaining == D("130.00")


def test_a_missed_installment_breaks_after_the_grace_only() -> None:
    pays = [_pay(CREATED, "30.00")]
    inside = standing(ITEMS, [], pays, date(2026, 4, 6), grace_days=5)
    assert inside.state == "good_standing" and inside.items[1].state == "due"
    broken = standing(ITEMS, [], pays, date(2026, 4, 7), grace_days=5)
    assert broken.state == "broken" and broken.broken_on == date(2026, 4, 7)
    assert [i.ref for i in broken.missed] == ["1"]


def test_an_unpaid_current_bill_breaks_only_when_required() -> None:
    bill = Debt("A", "bill:new", D("50.00"), date(2026, 3, 20))
    pays = [_pay(CREATED, "30.00")]
    assert standing(ITEMS, [bill], pays, date(2026, 3, 26), grace_days=5).state == "broken"
    lenient = standing(ITEMS, [bill], pays, date(2026, 3, 26), grace_days=5, current_bills_required=False)
    assert lenient.state == "good_standing" and lenient.missed == ()


def test_a_reversal_takes_back_the_latest_allocation_and_everything_paid_completes() -> None:
    pays = [_pay(CREATED, "30.00"), _pay(date(2026, 3, 3), "270.00"), _pay(date(2026, 3, 4), "-100.00")]
    s = standing(ITEMS, [], pays, date(2026, 3, 5), grace_days=5)
    assert [i.paid for i in s.items] == [D("30.00"), D("90.00"), D("80.00"), D(0)]
    assert s.state == "good_standing"
    done = standing(ITEMS, [], [*pays, _pay(date(2026, 3, 6), "120.00")], date(2026, 3, 6), grace_days=5)
    assert done.state == "completed" and done.credit == D("20.00") and done.missed == ()
    # a payment after the day asked about does not count
    assert standing(ITEMS, [], pays, date(2026, 3, 1), grace_days=5).paid_to_plan == 0


TERMS = load_plan_terms("us_tx")


def _request(**kw: object) -> PlanRequest:
    base: dict[str, object] = dict(account="A", overdue=D("300.00"), installments=3, down_payment=None,
                                   first_due=None, today=CREATED)  # fmt: skip
    return PlanRequest(**{**base, **kw})  # type: ignore[arg-type]


def test_eligibility_defaults_to_the_minimum_down_payment_and_first_due_date() -> None:
    down, first = check_eligibility(TERMS, _request())
    assert down == D("30.00") and first == date(2026, 4, 1)
    assert minimum_down_payment(TERMS, D("33.33")) == D("3.34")  # rounded up to the cent


@pytest.mark.parametrize(
    ("reason", "kw"),
    [
        ("prepaid", {"prepaid": True}),
        ("plan_active", {"active_plan": 7}),
        ("nothing_overdue", {"overdue": D(0)}),
        ("below_minimum", {"overdue": D("24.99")}),
        ("installments", {"installments": 7}),
        ("installments", {"installments": 0}),
        ("broken_recently", {"broken_recently": 1}),
        ("down_payment_small", {"down_payment": D("29.99")}),
        ("down_payment_large", {"down_payment": D("300.00")}),
        ("start", {"first_due": CREATED}),
        ("start", {"first_due": date(2026, 5, 2)}),
    ],
)
def test_each_eligibility_rule_refuses_with_its_reason(reason: str, kw: dict[str, object]) -> None:
    with pytest.raises(PlanRefused) as info:
        check_eligibility(TERMS, _request(**kw))
    assert info.value.reason == reason and str(info.value)


def test_terms_are_data_per_rule_set() -> None:
    de = load_plan_terms("eu_de")
    assert de.max_installments == 18 and de.min_down_payment_percent == 0
    assert check_eligibility(de, _request(overdue=D("120.00"), installments=18))[0] == D(0)
    from amiflow.errors import ConfigError

    with pytest.raises(ConfigError, match="no installment plan terms"):
        load_plan_terms("xx_none")


def test_a_plan_in_good_standing_blocks_with_its_own_rule() -> None:
    rs = load_ruleset("us_tx")
    now = datetime(2026, 2, 26, 16, tzinfo=UTC)
    sent = {t: datetime(2026, 2, 1, tzinfo=UTC) for t in rs.required_notices}
    case = DisconnectCase("A", "M1", "bill:1", D("500"), 60, notices_sent=sent)
    cond = Conditions(now=now, forecast_min_c=5.0, forecast_max_c=15.0)
    assert evaluate(rs, case, cond).allowed
    held = evaluate(rs, DisconnectCase("A", "M1", "bill:1", D("500"), 60, notices_sent=sent, installment_plan="12"),
                    cond)  # fmt: skip
    assert not held.allowed and held.blocking == ("installment_plan",)
    assert "installment plan 12 in good standing" in [r.detail for r in held.results if r.blocks]


def test_a_current_bill_paid_before_its_due_date_is_paid_not_prepaid_to_the_plan() -> None:
    bill = Debt("A", "bill:new", D("50.00"), date(2026, 3, 20))
    pays = [_pay(CREATED, "30.00"), _pay(date(2026, 3, 5), "50.00")]
    issued = standing(ITEMS, [bill], pays, date(2026, 3, 6), grace_days=5, bill_terms_days=21)  # issued 02-27
    assert issued.current[0].state == "paid" and issued.items[1].paid == 0
    unissued = standing(ITEMS, [bill], pays, date(2026, 3, 6), grace_days=5, bill_terms_days=10)  # issued 03-10
    assert unissued.current[0].paid == 0 and unissued.items[1].paid == D("50.00")
