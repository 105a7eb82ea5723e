"""Arrears by age band for the dashboard, from the book the collections job itself reads.

:func:`billing_bridge.arrears.load_book` gives each account's debts and payments as they stand today (in the rule
set's time zone, with its payment terms); :func:`billing_bridge.aging.age_bands` ages what is open of each debt by
its own due date (the amounts per band, as the collection report shows them) and
:func:`billing_bridge.arrears.compute_arrears` places each overdue account in the band of its oldest overdue debt
(the accounts per band). Amounts are kept per currency: an account counts in its own (its balance statement's, else
its latest bill's, else the rule set's).

Loading the book reads a year of bills and payments, so :class:`ArrearsCache` does it again only when its inputs
changed (a payment, a balance statement or a bill stored), the local day changed, or ``max_age_s`` passed.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import psycopg

from amiflow_app.dashboard.model import ArrearsBand, ArrearsFigure, ArrearsInCurrency
from amiflow_app.dashboard.operations import money
from billing_bridge.aging import AGE_BANDS, age_bands, band_of
from billing_bridge.arrears import compute_arrears, load_book
from billing_bridge.policy.model import RuleSet

__all__ = ["Arrears", "ArrearsCache", "arrears_figure"]

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Arrears:
    """The figure and the accounts it found overdue (the dashboard lists blocked disconnects of those only)."""

    figure: ArrearsFigure
    overdue: frozenset[str]


def _currencies(conn: psycopg.Connection[Any]) -> dict[str, str]:
    rows = conn.execute(
        "SELECT DISTINCT ON (account) account, currency FROM amiflow.v_bills WHERE account IS NOT NULL"
        " ORDER BY account, period_end DESC, version DESC"
    ).fetchall()
    out = {str(a): str(c).strip() for a, c in rows}
    out.update(
        (str(a), str(c).strip())
        for a, c in conn.execute("SELECT account, currency FROM amiflow.accounts WHERE currency IS NOT NULL")
    )
    return out


def arrears_figure(conn: psycopg.Connection[Any], ruleset: RuleSet, today: date) -> Arrears:
    """The arrears of every account on ``today`` (a local date of the rule set's time zone), by age band."""
    book = load_book(conn, today=today, terms_days=ruleset.payment_terms_days, tz=ruleset.timezone)
    positions = compute_arrears(
        (d for debts in book.debts.values() for d in debts),
        (p for pays in book.payments.values() for p in pays),
        today,
    )
    currency_of = _currencies(conn)
    amounts: dict[str, list[Decimal]] = {}
    accounts: dict[str, list[int]] = {}
    overdue: set[str] = set()
    for account, debts in book.debts.items():
        position = positions[account]
        if position.overdue_amount <= 0:
            continue
        currency = currency_of.get(account, ruleset.currency)
        bands = amounts.setdefault(currency, [_ZERO] * len(AGE_BANDS))
        for i, amount in enumerate(age_bands(debts, book.payments.get(account, []), today)):
            bands[i] += amount
        accounts.setdefault(currency, [0] * len(AGE_BANDS))[band_of(position.days_past_due)] += 1
        overdue.add(account)
    by_currency = [
        ArrearsInCurrency(
            currency=currency,
            total=money(sum(amounts[currency], _ZERO)),
            accounts=sum(accounts[currency]),
            bands=[
                ArrearsBand(band=name, amount=money(amount), accounts=n)
                for (name, _, _), amount, n in zip(AGE_BANDS, amounts[currency], accounts[currency], strict=True)
            ],
        )
        for currency in sorted(amounts)
    ]
    figure = ArrearsFigure(as_of=today, computed_at=datetime.now(UTC), by_currency=by_currency)
    return Arrears(figure, frozenset(overdue))


_INPUTS = (
    "SELECT (SELECT count(*) || '/' || coalesce(max(received_at)::text, '') FROM amiflow.payments),"
    " (SELECT count(*) || '/' || coalesce(max(received_at)::text, '') FROM amiflow.balances),"
    " (SELECT coalesce(max(id), 0) FROM amiflow.bills)"
)


class ArrearsCache:
    """:func:`arrears_figure`, computed again only when its inputs or the day changed or ``max_age_s`` passed.

    Safe to share between threads (the live loop and ``GET /dashboard/figures``).
    """

    def __init__(self, ruleset: RuleSet, *, max_age_s: float = 60.0) -> None:
        self._ruleset = ruleset
        self._max_age_s = max_age_s
        self._lock = threading.Lock()
        self._key: tuple[Any, ...] | None = None
        self._at = 0.0
        self._value: Arrears | None = None

    def get(self, conn: psycopg.Connection[Any], today: date) -> Arrears:
        row = conn.execute(_INPUTS).fetchone()
        key = (today, *(row or ()))
        with self._lock:
            fresh = time.monotonic() - self._at < self._max_age_s
            if self._value is not None and key == self._key and fresh:
                return self._value
            value = arrears_figure(conn, self._ruleset, today)
            self._key, self._at, self._value = key, time.monotonic(), value
            return value
