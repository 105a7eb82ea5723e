"""Arrears (FIFO allocation, reversals, history) and the reminder ladder's timing rules, as pure functions."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from billing_bridge.arrears import Debt, Payment, compute_arrears, payment_history, statement_history
from billing_bridge.policy import LadderRung
from billing_bridge.reminders import next_rung

D = Decimal
LADDER = (
    LadderRung("payment_reminder", 3),
    LadderRung("disconnect_warning", 10),
    LadderRung("disconnect_scheduled", 14),
)


def at(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, 12, tzinfo=UTC)


def test_payments_clear_the_oldest_debt_first() -> None:
    debts = [
        Debt("A", "bill:2", D("80"), date(2026, 2, 20), 0.6),
        Debt("A", "bill:1", D("100"), date(2026, 1, 20), 0.1),
        Debt("A", "bill:3", D("90"), date(2026, 3, 20)),
    ]
    a = compute_arrears(debts, [Payment("A", D("120"), at(2026, 2, 1))], date(2026, 3, 1))["A"]
    # 120 pays bill 1 (100) and 20 of bill 2: 60 of bill 2 overdue; bill 3 open but not yet due.
    assert a.overdue_amount == D("60")
    assert a.open_amount == D("150")
    assert a.debt_ref == "bill:2" and a.due_date == date(2026, 2, 20)
    assert a.days_past_due == 9
    assert a.estimated_share == 0.6


def test_reversal_reopens_and_nothing_due_is_zero() -> None:
    debts = [Debt("A", "b1", D("100"), date(2026, 1, 20))]
    paid = [Payment("A", D("100"), at(2026, 1, 10))]
    assert compute_arrears(debts, paid, date(2026, 3, 1))["A"].overdue_amount == 0
    bounced = [*paid, Payment("A", D("-100"), at(2026, 1, 25))]
    a = compute_arrears(debts, bounced, date(2026, 3, 1))["A"]
    assert a.overdue_amount == D("100") and a.days_past_due == 40
    early = compute_arrears(debts, [], date(2026, 1, 20))["A"]  # due today is not yet overdue
    assert early.overdue_amount == 0 and early.debt_ref is None


def test_overpayment_is_credit_not_negative_debt() -> None:
    debts = [Debt("A", "b1", D("50"), date(2026, 1, 20)), Debt("A", "b2", D("50"), date(2026, 2, 20))]
    a = compute_arrears(debts, [Payment("A", D("500"), at(2026, 1, 1))], date(2026, 3, 1))["A"]
    assert a.overdue_amount == 0 and a.open_amount == 0


def test_payment_history_late_and_partial() -> None:
    debts = [
        Debt("A", "b1", D("100"), date(2026, 1, 20)),
        Debt("A", "b2", D("100"), date(2026, 2, 20)),
        Debt("A", "b3", D("100"), date(2026, 3, 20)),
    ]
    pays = [
        Payment("A", D("100"), at(2026, 1, 15)),  # b1 on time
        Payment("A", D("40"), at(2026, 2, 10)),  # b2 partial before due
        Payment("A", D("60"), at(2026, 3, 1)),  # b2 cleared late
    ]
    h = {x.debt.ref: x for x in payment_history(debts, pays)}
    assert not h["b1"].late and not h["b1"].partial
    assert h["b2"].late and h["b2"].partial and h["b2"].paid_in_full_on == date(2026, 3, 1)
    assert h["b3"].late and h["b3"].paid_in_full_on is None and not h["b3"].partial


def test_statement_history_judges_each_statement_alone() -> None:
    s1 = (Debt("A", "s1", D("100"), date(2026, 1, 20)), at(2026, 1, 1))
    s2 = (Debt("A", "s2", D("160"), date(2026, 2, 20)), at(2026, 2, 1))  # cumulative: includes s1's unpaid 60
    pays = [Payment("A", D("40"), at(2026, 1, 18)), Payment("A", D("160"), at(2026, 2, 15))]
    h = statement_history([s1, s2], pays)
    assert h[0].partial and h[0].late
    assert not h[1].late and not h[1].partial


def test_ladder_sends_rungs_in_order_and_on_time() -> None:
    due = date(2026, 1, 20)
    assert next_rung(LADDER, due, {}, date(2026, 1, 22)) is None
    assert next_rung(LADDER, due, {}, date(2026, 1, 23)) == LADDER[0]
    sent = {"payment_reminder": date(2026, 1, 23)}
    assert next_rung(LADDER, due, sent, date(2026, 1, 29)) is None
    assert next_rung(LADDER, due, sent, date(2026, 1, 30)) == LADDER[1]
    sent["disconnect_warning"] = date(2026, 1, 30)
    assert next_rung(LADDER, due, sent, date(2026, 2, 3)) == LADDER[2]
    sent["disconnect_scheduled"] = date(2026, 2, 3)
    assert next_rung(LADDER, due, sent, date(2026, 6, 1)) is None


def test_a_late_run_keeps_the_ladder_spacing() -> None:
    due = date(2026, 1, 20)
    # The run did not happen for a month: only the first rung goes today, the next one 7 days later.
    assert next_rung(LADDER, due, {}, date(2026, 2, 20)) == LADDER[0]
    sent = {"payment_reminder": date(2026, 2, 20)}
    assert next_rung(LADDER, due, sent, date(2026, 2, 26)) is None
    assert next_rung(LADDER, due, sent, date(2026, 2, 27)) == LADDER[1]


def test_high_risk_gets_rungs_earlier_and_protected_only_reminders() -> None:
    due = date(2026, 1, 20)
    assert next_rung(LADDER, due, {}, date(2026, 1, 21), advance_days=2) == LADDER[0]
    sent = {"payment_reminder": date(2026, 1, 21)}
    assert next_rung(LADDER, due, sent, date(2026, 2, 28), allowed=frozenset({"payment_reminder"})) is None
