"""``arrears report --now DATE`` is a point-in-time view: what stood at the end of that day, not what came later.

An account that paid after the evaluation date is overdue on it; a billing statement received later does not
replace the one in force; a bill of a period not yet ended is no debt yet.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import psycopg

from billing_bridge.arrears import compute_arrears, load_book

TERMS = 21  # days from the period end to the due date


def _arrears(conn: psycopg.Connection[Any], today: date) -> dict[str, Any]:
    book = load_book(conn, today=today, terms_days=TERMS, tz="America/Chicago")
    debts = [d for items in book.debts.values() for d in items]
    payments = [p for items in book.payments.values() for p in items]
    return compute_arrears(debts, payments, today)


def _bill(conn: psycopg.Connection[Any], bill_id: str, account: str, start: str, end: str, total: str) -> None:
    conn.execute(
        "INSERT INTO amiflow.bills (bill_id, version, account, meter, period_start, period_end, tariff_id,"
        " tariff_version, total, currency, content_hash, body) VALUES (%s, 1, %s, 'M-1', %s, %s, 'T', 1, %s, 'USD',"
        " 'h', '{}')",
        (bill_id, account, start, end, total),
    )


def test_a_later_payment_does_not_clear_an_earlier_date(db_conn: psycopg.Connection[Any]) -> None:
    db_conn.execute("INSERT INTO amiflow.accounts (account, currency) VALUES ('ACC-1', 'USD')")
    _bill(db_conn, "B-SEP", "ACC-1", "2026-09-01", "2026-09-30", "120.00")  # due 2026-10-21
    _bill(db_conn, "B-NOV", "ACC-1", "2026-11-01", "2026-11-30", "80.00")  # period not over on the dates below
    db_conn.execute(
        "INSERT INTO amiflow.payments (payment_id, account, amount, currency, paid_at, source)"
        " VALUES ('P-1', 'ACC-1', 120.00, 'USD', %s, 'api')",
        (datetime(2026, 11, 15, 18, 0, tzinfo=UTC),),
    )
    before = _arrears(db_conn, date(2026, 11, 1))["ACC-1"]
    assert before.overdue_amount == Decimal("120.00") and before.days_past_due == 11
    assert before.open_amount == Decimal("120.00")  # the November bill is not a debt yet
    assert before.debt_ref == "bill:B-SEP"
    on_the_day = _arrears(db_conn, date(2026, 11, 15))["ACC-1"]  # paid at 12:00 Chicago: counts that day
    assert on_the_day.overdue_amount == 0
    assert _arrears(db_conn, date(2026, 11, 20))["ACC-1"].overdue_amount == 0


def test_a_later_statement_does_not_replace_the_one_in_force(db_conn: psycopg.Connection[Any]) -> None:
    db_conn.execute(
        "INSERT INTO amiflow.accounts (account, currency, balance, due_date, balance_as_of)"
        " VALUES ('ACC-S', 'USD', 0, '2026-11-30', '2026-11-10T00:00:00Z')"
    )
    db_conn.execute(
        "INSERT INTO amiflow.balances (account, as_of, balance, currency, due_date, source) VALUES"
        " ('ACC-S', '2026-10-01T00:00:00Z', 100.00, 'USD', '2026-10-15', 'api'),"
        " ('ACC-S', '2026-11-10T00:00:00Z', 0, 'USD', '2026-11-30', 'api')"
    )
    assert _arrears(db_conn, date(2026, 11, 1))["ACC-S"].overdue_amount == Decimal("100.00")
    assert "ACC-S" not in _arrears(db_conn, date(2026, 11, 20))  # the newer statement says nothing is owed
    assert "ACC-S" not in _arrears(db_conn, date(2026, 9, 20))  # before any statement: nothing known


def test_a_row_stored_out_of_range_does_not_break_the_book(db_conn: psycopg.Connection[Any]) -> None:
    """A payment "paid" in year 1 (stored before the plausibility window existed) is left out, not a crash."""
    db_conn.execute(
        "INSERT INTO amiflow.accounts (account, currency, balance, due_date, balance_as_of)"
        " VALUES ('ACC-Y', 'USD', 50, '2026-10-15', '2026-10-01T00:00:00Z')"
    )
    db_conn.execute(
        "INSERT INTO amiflow.balances (account, as_of, balance, currency, due_date, source) VALUES"
        " ('ACC-Y', '2026-10-01T00:00:00Z', 50.00, 'USD', '2026-10-15', 'api'),"
        " ('ACC-Y', '0001-01-01T00:00:00+01:00', 10.00, 'USD', '2026-10-15', 'api')"
    )
    db_conn.execute(
        "INSERT INTO amiflow.payments (payment_id, account, amount, currency, paid_at, source)"
        " VALUES ('P-Y', 'ACC-Y', 50.00, 'USD', '0001-01-01T00:00:00+01:00', 'api')"
    )
    assert _arrears(db_conn, date(2026, 11, 1))["ACC-Y"].overdue_amount == Decimal("50.00")
