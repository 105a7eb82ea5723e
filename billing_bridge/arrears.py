"""Arrears per account: what is overdue, since when, and the payment history behind it.

The core (:func:`compute_arrears`, :func:`payment_history`) is pure: debts and payments in, values out. Payments are
applied first-in first-out to the oldest debt (the usual rule of utility receivables), a negative payment (reversal)
re-opens what it had paid. :func:`load_book` reads the inputs from the database as they stood at the end of a day
(payments, statements and bills after it do not count):

- accounts with a balance statement from billing (``amiflow.accounts``, migration 0006) owe the statement in force
  that day (the newest in ``amiflow.balances`` by then): one debt ``stmt:{account}:{due_date}`` of the stated
  balance, less the payments received after the statement's ``as_of``;
- other accounts owe their bills (``amiflow.v_bills``, the latest version of each bill of a period ended by then,
  when the billing run's migration is present): one debt per bill, due ``payment_terms_days`` after the period end.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

__all__ = [
    "AccountFacts",
    "Arrears",
    "Book",
    "Debt",
    "DebtHistory",
    "Payment",
    "compute_arrears",
    "load_book",
    "load_facts",
    "payment_history",
    "statement_history",
]

_ZERO = Decimal(0)
#: Rows dated before this (stored before the plausibility window existed, e.g. a payment "paid" in year 1) are left
#: out of the book: Python cannot even represent some of them, and no real debt or payment is that old.
READABLE_FROM = datetime(1900, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Debt:
    """One amount owed: a bill or a billing statement, due on ``due_date`` (local date of the account)."""

    account: str
    ref: str
    amount: Decimal
    due_date: date
    estimated_share: float = 0.0


@dataclass(frozen=True, slots=True)
class Payment:
    """One payment (negative = reversal)."""

    account: str
    amount: Decimal
    paid_at: datetime


@dataclass(frozen=True, slots=True)
class Arrears:
    """An account's position on ``today``: ``overdue_amount`` is the unpaid part of debts due before today;
    ``days_past_due`` counts from the oldest of them; ``debt_ref`` names it (the bill behind a disconnect)."""

    account: str
    overdue_amount: Decimal
    open_amount: Decimal
    days_past_due: int
    debt_ref: str | None
    due_date: date | None
    estimated_share: float


@dataclass(frozen=True, slots=True)
class DebtHistory:
    """How one debt was paid: ``paid_before_due`` by its due date, ``paid_in_full_on`` the day it was cleared."""

    debt: Debt
    paid_before_due: Decimal
    paid_in_full_on: date | None

    @property
    def late(self) -> bool:
        return self.paid_in_full_on is None or self.paid_in_full_on > self.debt.due_date

    @property
    def partial(self) -> bool:
        return _ZERO < self.paid_before_due < self.debt.amount


@dataclass(frozen=True, slots=True)
class Book:
    """Debts and payments per account, as loaded for one run."""

    debts: dict[str, list[Debt]] = field(default_factory=dict)
    payments: dict[str, list[Payment]] = field(default_factory=dict)
    history: dict[str, list[DebtHistory]] = field(default_factory=dict)
    typical_bill: dict[str, Decimal] = field(default_factory=dict)


def _allocate(debts: Sequence[Debt], paid: Decimal) -> list[Decimal]:
    """Remaining amount of each debt (sorted oldest first) after ``paid`` is applied FIFO."""
    remaining = []
    for d in debts:
        take = min(max(paid, _ZERO), d.amount)
        paid -= take
        remaining.append(d.amount - take)
    return remaining


def compute_arrears(debts: Iterable[Debt], payments: Iterable[Payment], today: date) -> dict[str, Arrears]:
    """The arrears of every account that has debts, on ``today``."""
    by_account: dict[str, list[Debt]] = {}
    for d in debts:
        by_account.setdefault(d.account, []).append(d)
    paid: dict[str, Decimal] = {}
    for p in payments:
        paid[p.account] = paid.get(p.account, _ZERO) + p.amount
    out = {}
    for account, items in by_account.items():
        items.sort(key=lambda d: (d.due_date, d.ref))
        remaining = _allocate(items, paid.get(account, _ZERO))
        overdue = [(d, r) for d, r in zip(items, remaining, strict=True) if r > 0 and d.due_date < today]
        oldest = overdue[0][0] if overdue else None
        out[account] = Arrears(
            account=account,
            overdue_amount=sum((r for _, r in overdue), _ZERO),
            open_amount=sum(remaining, _ZERO),
            days_past_due=(today - oldest.due_date).days if oldest else 0,
            debt_ref=oldest.ref if oldest else None,
            due_date=oldest.due_date if oldest else None,
            estimated_share=max((d.estimated_share for d, _ in overdue), default=0.0),
        )
    return out


def payment_history(debts: Iterable[Debt], payments: Iterable[Payment]) -> list[DebtHistory]:
    """Replay payments in time order against debts (FIFO) and tell, per debt, how and when it was paid."""
    items = sorted(debts, key=lambda d: (d.due_date, d.ref))
    open_amount = [d.amount for d in items]
    before_due = [_ZERO] * len(items)
    cleared: list[date | None] = [None] * len(items)
    for p in sorted(payments, key=lambda p: p.paid_at):
        left = p.amount
        for i, d in enumerate(items):
            if left <= 0:
                break
            take = min(left, open_amount[i])
            if take <= 0:
                continue
            open_amount[i] -= take
            left -= take
            if p.paid_at.date() <= d.due_date:
                before_due[i] += take
            if open_amount[i] == 0:
                cleared[i] = p.paid_at.date()
    return [DebtHistory(d, before_due[i], cleared[i]) for i, d in enumerate(items)]


def statement_history(statements: Iterable[tuple[Debt, datetime]], payments: Iterable[Payment]) -> list[DebtHistory]:
    """How each billing statement (debt, as_of) was paid by the payments received after its ``as_of``.

    Statements are cumulative (a new one includes what is still open), so each is judged on its own, not FIFO.
    """
    pays = sorted(payments, key=lambda p: p.paid_at)
    out = []
    for debt, as_of in statements:
        running, before, cleared = _ZERO, _ZERO, None
        for p in pays:
            if p.paid_at <= as_of:
                continue
            running += p.amount
            if p.paid_at.date() <= debt.due_date:
                before = running
            if cleared is None and running >= debt.amount:
                cleared = p.paid_at.date()
        out.append(DebtHistory(debt, max(before, _ZERO), cleared))
    return out


# -- loading from the database ------------------------------------------------------------------------------------


def _exists(conn: psycopg.Connection[Any], name: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])


def _bill_debts(conn: psycopg.Connection[Any], terms_days: int, since: date, today: date) -> list[Debt]:
    """The bills of periods that ended before ``today`` (a bill is issued after its period)."""
    if not _exists(conn, "amiflow.v_bills"):
        return []
    rows = conn.execute(
        "SELECT DISTINCT ON (bill_id) account, bill_id, total, period_end, estimated_share, status"
        " FROM amiflow.v_bills WHERE account IS NOT NULL AND period_end >= %s AND period_end < %s"
        " ORDER BY bill_id, version DESC",
        (since, today),
    ).fetchall()
    return [
        Debt(a, f"bill:{b}", Decimal(t), pe + timedelta(days=terms_days), float(es or 0.0))
        for a, b, t, pe, es, st in rows
        if str(st or "").lower() not in ("void", "cancelled", "superseded") and Decimal(t) > 0
    ]


def load_book(conn: psycopg.Connection[Any], *, today: date, terms_days: int, tz: str = "UTC") -> Book:
    """Debts and payments per account as they stood at the end of ``today`` (local date in ``tz``), and 12 months
    of payment history before it (see the module docstring).

    Point in time: nothing after the end of ``today`` counts, so an account that paid later is overdue on an
    earlier date, and a statement received later does not replace the one in force then.
    """
    since = today - timedelta(days=365)
    cut = datetime.combine(today + timedelta(days=1), time(0), ZoneInfo(tz))
    book = Book()
    stated = {a for (a,) in conn.execute("SELECT account FROM amiflow.accounts WHERE balance IS NOT NULL")}
    statements = conn.execute(
        "SELECT DISTINCT ON (account) account, balance, due_date, as_of FROM amiflow.balances"
        " WHERE due_date IS NOT NULL AND as_of >= %s AND as_of < %s ORDER BY account, as_of DESC",
        (READABLE_FROM, cut),
    ).fetchall()
    latest_share = _latest_estimated_share(conn, today)
    all_payments: dict[str, list[Payment]] = {}
    for account, amt, at in conn.execute(
        "SELECT account, amount, paid_at FROM amiflow.payments WHERE paid_at >= %s AND paid_at < %s", (since, cut)
    ).fetchall():
        all_payments.setdefault(account, []).append(Payment(account, amt, at))
    for account, balance, due, as_of in statements:
        if balance > 0:
            ref = f"stmt:{account}:{due.isoformat()}"
            book.debts[account] = [Debt(account, ref, balance, due, latest_share.get(account, 0.0))]
            rows = conn.execute(
                "SELECT amount, paid_at FROM amiflow.payments WHERE account = %s AND received_at > %s"
                " AND paid_at >= %s AND paid_at < %s",
                (account, as_of, READABLE_FROM, cut),
            ).fetchall()
            book.payments[account] = [Payment(account, amt, at) for amt, at in rows]
    bills = [d for d in _bill_debts(conn, terms_days, since, today) if d.account not in stated]
    for d in bills:
        book.debts.setdefault(d.account, []).append(d)
    for account, bill_items in _group(bills).items():
        book.payments[account] = all_payments.get(account, [])
        book.history[account] = payment_history(bill_items, book.payments[account])
    hist: dict[str, list[tuple[Debt, datetime]]] = {}
    for account, as_of, bal, due in conn.execute(
        "SELECT account, as_of, balance, due_date FROM amiflow.balances"
        " WHERE due_date IS NOT NULL AND balance > 0 AND as_of >= %s AND as_of < %s ORDER BY account, as_of",
        (since, cut),
    ).fetchall():
        hist.setdefault(account, []).append((Debt(account, f"stmt:{account}:{due}", bal, due), as_of))
    for account, stmts in hist.items():
        book.history[account] = statement_history(stmts, all_payments.get(account, []))
    for account, paid in book.history.items():
        amounts = sorted(h.debt.amount for h in paid if h.debt.due_date >= since)
        if amounts:
            book.typical_bill[account] = amounts[len(amounts) // 2]
    return book


def _group(debts: Iterable[Debt]) -> dict[str, list[Debt]]:
    out: dict[str, list[Debt]] = {}
    for d in debts:
        out.setdefault(d.account, []).append(d)
    return out


def _latest_estimated_share(conn: psycopg.Connection[Any], today: date) -> dict[str, float]:
    if not _exists(conn, "amiflow.v_bills"):
        return {}
    rows = conn.execute(
        "SELECT DISTINCT ON (account) account, estimated_share FROM amiflow.v_bills"
        " WHERE account IS NOT NULL AND period_end < %s ORDER BY account, period_end DESC, version DESC",
        (today,),
    ).fetchall()
    return {a: float(s or 0.0) for a, s in rows}


@dataclass(frozen=True, slots=True)
class AccountFacts:
    """What billing or an operator recorded about an account (``amiflow.account_policy``)."""

    protected: frozenset[str] = frozenset()
    open_dispute: bool = False
    payment_plan: str = "none"
    prepaid: bool = False

    @property
    def collectable(self) -> bool:
        """False when no disconnect could follow (protected, disputed, or a plan in good standing)."""
        return not (self.protected or self.open_dispute or self.payment_plan == "good_standing")


def load_facts(conn: psycopg.Connection[Any]) -> dict[str, AccountFacts]:
    """The policy facts of every account that has some (others get the defaults)."""
    rows = conn.execute(
        "SELECT account, protected, open_dispute, payment_plan, prepaid FROM amiflow.account_policy"
    ).fetchall()
    return {a: AccountFacts(frozenset(p or ()), bool(d), str(pp), bool(pre)) for a, p, d, pp, pre in rows}
