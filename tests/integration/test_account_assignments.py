"""Accounts carry a region and an assigned collector, imported with the meters; an account the registry created
before billing stated its currency takes the currency of its first payment, and later ones are checked against it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from amiflow.db.registry import AccountAssignment, account_assignments, assign_account, import_meters_csv
from amiflow.errors import ConfigError
from billing_bridge.payments import InputRefused, PaymentIn, Recorded, record_payment

CSV = """meter,protocol,uri,timezone,tariff,account,region,collector
M1,mqtt,,UTC,,ACC-1,north,COL-07
M2,mqtt,,UTC,,ACC-1,north,COL-07
M3,mqtt,,UTC,,ACC-2,south,
M4,mqtt,,UTC,,ACC-3,,
"""


def test_region_and_collector_come_with_the_meter_import(db_conn: psycopg.Connection[Any]) -> None:
    assert import_meters_csv(db_conn, CSV) == 4
    assert account_assignments(db_conn) == {
        "ACC-1": AccountAssignment("ACC-1", "north", "COL-07"),
        "ACC-2": AccountAssignment("ACC-2", "south", None),
    }
    assign_account(db_conn, AccountAssignment("ACC-2", "south", "COL-01"))
    assert account_assignments(db_conn)["ACC-2"].collector == "COL-01"


def test_rows_of_one_account_must_agree_and_nothing_is_imported_otherwise(db_conn: psycopg.Connection[Any]) -> None:
    bad = CSV.replace("M2,mqtt,,UTC,,ACC-1,north,COL-07", "M2,mqtt,,UTC,,ACC-1,west,COL-07")
    with pytest.raises(ConfigError, match="line 3: account ACC-1 has another region"):
        import_meters_csv(db_conn, bad)
    assert db_conn.execute("SELECT count(*) FROM amiflow.meters").fetchone() == (0,)
    assert account_assignments(db_conn) == {}


def test_an_account_made_by_the_registry_takes_its_first_payments_currency(db_conn: psycopg.Connection[Any]) -> None:
    assign_account(db_conn, AccountAssignment("ACC-9", "east", "COL-02"))
    at = datetime(2026, 3, 1, tzinfo=UTC)
    pay = PaymentIn(payment_id="P1", account="ACC-9", amount="10.00", currency="EUR", paid_at=at)
    assert record_payment(db_conn, pay, "api") is Recorded.CREATED
    assert db_conn.execute("SELECT currency, region FROM amiflow.accounts").fetchall() == [("EUR", "east")]
    other = PaymentIn(payment_id="P2", account="ACC-9", amount="10.00", currency="USD", paid_at=at)
    with pytest.raises(InputRefused):
        record_payment(db_conn, other, "api")
