"""Bad payment input never changes stored data, and data stored out of range before the checks existed stays
readable (issue 19), on a real database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from amiflow.db import Database
from amiflow.settings import Settings
from amiflow_app.cli import main
from billing_bridge.api import create_app

AUTH = {"Authorization": "Bearer tok"}
RECENT = (datetime.now(UTC) - timedelta(days=3)).replace(microsecond=0)
PAYMENT = {"payment_id": "P1", "account": "A1", "amount": "12.50", "currency": "EUR", "paid_at": RECENT.isoformat()}


@pytest.fixture
def api(db_url: str) -> Iterator[TestClient]:
    db = Database(db_url)
    try:
        with TestClient(create_app(Settings(api_token="tok"), database=db)) as c:
            yield c
    finally:
        db.close()


def counts(db_url: str) -> tuple[int, int, int]:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM amiflow.accounts), (SELECT count(*) FROM amiflow.payments),"
            " (SELECT count(*) FROM amiflow.balances)"
        ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


@pytest.mark.parametrize("paid_at", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59Z", 1_793_491_200])
def test_implausible_payments_store_nothing(api: TestClient, db_url: str, paid_at: Any) -> None:
    response = api.post("/billing/v1/payments", json={**PAYMENT, "paid_at": paid_at}, headers=AUTH)
    assert response.status_code == 422
    assert counts(db_url) == (0, 0, 0)


def test_currency_must_be_the_accounts(api: TestClient, db_url: str) -> None:
    assert api.post("/billing/v1/payments", json=PAYMENT, headers=AUTH).status_code == 201
    usd = api.post("/billing/v1/payments", json={**PAYMENT, "payment_id": "P2", "currency": "USD"}, headers=AUTH)
    assert usd.status_code == 422
    (error,) = usd.json()["detail"]
    assert error["loc"] == ["body", "currency"] and "kept in EUR, not USD" in error["msg"]
    statement = {"account": "A1", "balance": "80.00", "currency": "USD", "as_of": RECENT.isoformat()}
    assert api.post("/billing/v1/balances", json=statement, headers=AUTH).status_code == 422
    assert counts(db_url) == (1, 1, 0)
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT currency FROM amiflow.accounts").fetchall() == [("EUR",)]


def test_rows_stored_out_of_range_are_readable_and_retries_do_not_crash(api: TestClient, db_url: str) -> None:
    # what the API accepted before issue 19: a year-1 date with an offset is 1 BC in UTC, which Python cannot hold
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO amiflow.accounts (account, currency, balance, due_date, balance_as_of)"
            " VALUES ('A1', 'EUR', 10.00, '2026-12-20', '0001-01-01 00:00:00+01')"
        )
        conn.execute(
            "INSERT INTO amiflow.payments (payment_id, account, amount, currency, paid_at, source) VALUES"
            " ('OLD', 'A1', 5.00, 'EUR', '0001-01-01 00:00:00+01', 'api'),"
            " ('FAR', 'A1', 6.00, 'EUR', '9999-12-31 23:59:59+00', 'api')"
        )
    assert api.post("/billing/v1/payments", json=PAYMENT, headers=AUTH).status_code == 201
    got = api.get("/billing/v1/accounts/A1", headers=AUTH)
    assert got.status_code == 200, got.text
    account = got.json()
    assert account["balance_as_of"] is None and "outside the years 1-9999" in account["error"]
    by_id = {p["payment_id"]: p for p in account["payments"]}
    assert by_id["OLD"]["paid_at"] is None and "correct payment OLD" in by_id["OLD"]["error"]
    assert by_id["FAR"]["paid_at"] == "9999-12-31T23:59:59+00:00" and "error" not in by_id["FAR"]
    assert datetime.fromisoformat(by_id["P1"]["paid_at"]) == RECENT
    # the billing system retries the poisoned payment with a corrected date: a conflict, not a 500
    retry = api.post("/billing/v1/payments", json={**PAYMENT, "payment_id": "OLD", "amount": "5.00"}, headers=AUTH)
    assert retry.status_code == 409


def test_import_refuses_implausible_rows_and_other_currencies(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AMIFLOW_DATABASE_URL", db_url)
    monkeypatch.setenv("AMIFLOW_PLAUSIBLE_PAST_DAYS", "30")
    path = tmp_path / "payments.csv"
    path.write_text(
        "payment_id,account,amount,currency,paid_at\n"
        f"F1,A1,10.00,EUR,{RECENT.isoformat()}\n"
        "F2,A1,10.00,EUR,0001-01-01T00:00:00+01:00\n"
        f"F3,A1,10.00,EUR,{(RECENT - timedelta(days=40)).isoformat()}\n"  # outside the configured 30 days
        f"F4,A1,10.00,USD,{RECENT.isoformat()}\n"
    )
    assert main(["payments", "import", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:3: paid_at" in err and f"{path}:4: paid_at" in err and "30 days before now" in err
    assert f"{path}:5: currency: account 'A1' is kept in EUR, not USD" in err
    assert counts(db_url) == (1, 1, 0)
