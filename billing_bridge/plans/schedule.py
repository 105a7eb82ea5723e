"""An installment plan's schedule and its standing: pure functions of the plan, the payments and the day.

**Split.** An overdue balance ``B``, a down payment ``D`` (0 <= D < B) and ``N`` installments: the down payment is
item 0, due on the creation day; the rest ``R = B - D`` is cut into N installments of ``R / N`` rounded down to the
cent, the last one taking the remainder, so the items add up to B exactly. Installment k (1..N) is due
``interval_months * (k - 1)`` months after the first due date (the day of the month clipped to the month's end and
restored when the month is long enough: Jan 31, Feb 28, Mar 31).

**Allocation** (the stated order). The payments received since the plan's creation, in time order, each go

1. to the plan's items already due on the payment's (local) day, oldest first;
2. then to the account's current bills (bills due since the plan's creation, not part of it) issued by that day
   (a bill is issued ``bill_terms_days`` before its due date), oldest first;
3. then to the plan's items not yet due, in order (a prepayment);
4. what is left is a credit outside the plan.

A reversal (negative payment) takes back the latest allocations first.

**Standing** on a day: ``completed`` when every item of the plan is paid; else ``broken`` when an item (and, when
the plan requires current bills to be paid, a current bill) is still unpaid more than ``grace_days`` after its due
date; else ``good_standing``.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from billing_bridge.arrears import Debt, Payment

__all__ = [
    "Installment",
    "ItemStatus",
    "Standing",
    "add_months",
    "split_balance",
    "standing",
]

_CENT = Decimal("0.01")
_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Installment:
    """One dated amount of a plan; number 0 is the down payment."""

    number: int
    due_date: date
    amount: Decimal


@dataclass(frozen=True, slots=True)
class ItemStatus:
    """How far one plan item (``kind`` installment) or current bill (``kind`` current_bill) is paid on a day.

    ``state``: paid | open (not due yet) | due (unpaid, inside the grace period) | missed (unpaid after the grace).
    """

    kind: str
    ref: str
    due_date: date
    amount: Decimal
    paid: Decimal
    state: str

    @property
    def remaining(self) -> Decimal:
        return self.amount - self.paid


@dataclass(frozen=True, slots=True)
class Standing:
    """A plan's standing on ``day``: its items, the current bills, what went to the plan and what was left over."""

    day: date
    state: str
    items: tuple[ItemStatus, ...]
    current: tuple[ItemStatus, ...]
    paid_to_plan: Decimal
    credit: Decimal
    missed: tuple[ItemStatus, ...]  # the items (and required current bills) unpaid after the grace
    broken_on: date | None

    @property
    def next_due(self) -> ItemStatus | None:
        """The first plan item not fully paid."""
        return next((i for i in self.items if i.remaining > 0), None)

    @property
    def remaining(self) -> Decimal:
        return sum((i.remaining for i in self.items), _ZERO)

    def as_json(self) -> dict[str, Any]:
        """The standing as the API and ``plans show --json`` give it (money as decimal strings)."""
        return {
            "day": self.day.isoformat(),
            "state": self.state,
            "paid_to_plan": str(self.paid_to_plan),
            "remaining": str(self.remaining),
            "credit": str(self.credit),
            "broken_on": self.broken_on.isoformat() if self.broken_on else None,
            "items": [
                {"kind": i.kind, "ref": i.ref, "due_date": i.due_date.isoformat(), "amount": str(i.amount),
                 "paid": str(i.paid), "state": i.state}
                for i in (*self.items, *self.current)
            ],
        }  # fmt: skip


def add_months(day: date, months: int) -> date:
    """``day`` plus ``months`` calendar months, the day of the month clipped to the target month's length."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def split_balance(
    overdue: Decimal,
    down_payment: Decimal,
    installments: int,
    *,
    created_on: date,
    first_due: date,
    interval_months: int = 1,
) -> tuple[Installment, ...]:
    """The plan's items (see the module docstring); ValueError when the figures cannot make a plan."""
    if overdue <= 0 or overdue != overdue.quantize(_CENT):
        raise ValueError(f"the overdue balance {overdue} must be positive, in cents")
    if not _ZERO <= down_payment < overdue or down_payment != down_payment.quantize(_CENT):
        raise ValueError(f"the down payment {down_payment} must be 0 or more, in cents, below the balance {overdue}")
    if installments < 1 or interval_months < 1:
        raise ValueError("a plan needs at least one installment and an interval of at least one month")
    rest = overdue - down_payment
    each = (rest / installments).quantize(_CENT, ROUND_DOWN)
    if each <= 0:
        raise ValueError(f"{rest} cannot be split into {installments} installments of at least 0.01")
    items = [Installment(0, created_on, down_payment)] if down_payment > 0 else []
    for k in range(1, installments + 1):
        amount = each if k < installments else rest - each * (installments - 1)
        items.append(Installment(k, add_months(first_due, interval_months * (k - 1)), amount))
    return tuple(items)


@dataclass(slots=True)
class _Bucket:
    kind: str
    ref: str
    due_date: date
    amount: Decimal
    open_from: date
    paid: Decimal = _ZERO


def _fill(buckets: Iterable[_Bucket], amount: Decimal, log: list[tuple[_Bucket, Decimal]]) -> Decimal:
    for b in buckets:
        if amount <= 0:
            break
        take = min(amount, b.amount - b.paid)
        if take > 0:
            b.paid += take
            amount -= take
            log.append((b, take))
    return amount


def _take_back(amount: Decimal, log: list[tuple[_Bucket, Decimal]]) -> Decimal:
    """Undo ``amount`` of the latest allocations; returns what could not be undone (it reduces the credit)."""
    while amount > 0 and log:
        b, took = log.pop()
        back = min(took, amount)
        b.paid -= back
        amount -= back
        if back < took:
            log.append((b, took - back))
    return amount


def _allocate(
    plan: list[_Bucket], current: list[_Bucket], payments: Sequence[tuple[date, Decimal]]
) -> tuple[Decimal, Decimal]:
    """Apply the payments in the stated order; returns (paid to the plan, credit left outside it)."""
    log: list[tuple[_Bucket, Decimal]] = []
    credit = _ZERO
    for day, amount in payments:
        if amount < 0:
            credit -= _take_back(-amount, log)
            continue
        amount = _fill((b for b in plan if b.due_date <= day), amount, log)
        amount = _fill((b for b in current if b.open_from <= day), amount, log)
        amount = _fill((b for b in plan if b.due_date > day), amount, log)
        credit += amount
    return sum((b.paid for b in plan), _ZERO), credit


def _status(b: _Bucket, day: date, grace_days: int) -> ItemStatus:
    if b.paid >= b.amount:
        state = "paid"
    elif b.due_date > day:
        state = "open"
    elif day <= b.due_date + timedelta(days=grace_days):
        state = "due"
    else:
        state = "missed"
    return ItemStatus(b.kind, b.ref, b.due_date, b.amount, b.paid, state)


def standing(
    items: Sequence[Installment],
    current_bills: Sequence[Debt],
    payments: Iterable[Payment],
    day: date,
    *,
    grace_days: int,
    current_bills_required: bool = True,
    bill_terms_days: int = 0,
    tz: str = "UTC",
) -> Standing:
    """The plan's standing on ``day`` (local) from the payments received since its creation (nothing after ``day``
    counts); ``current_bills`` are the account's bills due since then that the plan does not cover, each issued
    ``bill_terms_days`` before its due date."""
    zone = ZoneInfo(tz)
    pays = sorted((p.paid_at, p.amount) for p in payments)
    dated = [(at.astimezone(zone).date(), amount) for at, amount in pays]
    dated = [(d, a) for d, a in dated if d <= day]
    ordered = sorted(items, key=lambda i: i.number)
    plan = [_Bucket("installment", str(i.number), i.due_date, i.amount, i.due_date) for i in ordered]
    lead = timedelta(days=bill_terms_days)
    bills = sorted(current_bills, key=lambda d: (d.due_date, d.ref))
    current = [_Bucket("current_bill", d.ref, d.due_date, d.amount, d.due_date - lead) for d in bills]
    paid, credit = _allocate(plan, current, dated)
    statuses = tuple(_status(b, day, grace_days) for b in plan)
    bill_statuses = tuple(_status(b, day, grace_days) for b in current)
    counted = [*statuses, *(bill_statuses if current_bills_required else ())]
    missed = tuple(i for i in counted if i.state == "missed")
    if all(i.state == "paid" for i in statuses):
        state, missed = "completed", ()
    else:
        state = "broken" if missed else "good_standing"
    broken_on = min((i.due_date + timedelta(days=grace_days + 1) for i in missed), default=None)
    return Standing(day, state, statuses, bill_statuses, paid, credit, missed, broken_on)
