"""The inbound billing API and `amiflow payments import` against a real database: idempotency and storage."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from amiflow.db import Database
from amiflow.settings import Settings
from amiflow_app.cli import main
from billing_bridge.api import create_app
from billing_bridge.delivery import sign

AUTH = {"Authorization": "Bearer tok"}
PAYMENT = {"payment_id": "P1", "account": "A1", "amount": "12.50", "currency": "USD", "paid_at": "2026-11-01T10:00:00Z"}


@pytest.fixture
def api(db_url: str) -> Iterator[TestClient]:
    db = Database(db_url)
    try:
        with TestClient(create_app(Settings(api_token="tok", billing_secret="sec"), database=db)) as c:
            yield c
    finally:
        db.close()


def test_payments_are_idempotent_by_id(api: TestClient, db_url: str) -> None:
    first = api.post("/billing/v1/payments", json=PAYMENT, headers=AUTH)
    assert first.status_code == 201 and first.json()["status"] == "created"
    # the same content, differently written (offset, key order): a no-op
    same = {**PAYMENT, "paid_at": "2026-11-01T11:00:00+01:00", "amount": "12.5"}
    again = api.post("/billing/v1/payments", json=dict(reversed(list(same.items()))), headers=AUTH)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    changed = api.post("/billing/v1/payments", json={**PAYMENT, "amount": "13.00"}, headers=AUTH)
    assert changed.status_code == 409 and "different content" in changed.json()["error"]
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT payment_id, account, amount, currency, source FROM amiflow.payments").fetchall()
        accounts = conn.execute("SELECT account FROM amiflow.accounts").fetchall()
    assert rows == [("P1", "A1", Decimal("12.50"), "USD", "api")]
    assert accounts == [("A1",)]


def test_hmac_signed_payment_and_reversal(api: TestClient) -> None:
    body = json.dumps({**PAYMENT, "payment_id": "P2", "amount": "-5.00"}).encode()
    headers = {"X-Amiflow-Signature": sign(body, b"sec"), "Content-Type": "application/json"}
    assert api.post("/billing/v1/payments", content=body, headers=headers).status_code == 201
    tampered = body.replace(b"-5.00", b"-6.00")
    assert api.post("/billing/v1/payments", content=tampered, headers=headers).status_code == 401


def test_balances_follow_the_newest_statement(api: TestClient) -> None:
    def post(as_of: str, balance: str, due: str) -> int:
        body = {"account": "A7", "balance": balance, "currency": "USD", "as_of": as_of, "due_date": due}
        status: int = api.post("/billing/v1/balances", json=body, headers=AUTH).status_code
        return status

    assert post("2026-11-05T00:00:00Z", "80.00", "2026-11-20") == 201
    assert post("2026-11-01T00:00:00Z", "50.00", "2026-11-15") == 201  # older, arrives late: history only
    assert post("2026-11-05T00:00:00Z", "80.00", "2026-11-20") == 200
    assert post("2026-11-05T00:00:00Z", "81.00", "2026-11-20") == 409
    api.post("/billing/v1/payments", json={**PAYMENT, "account": "A7"}, headers=AUTH)
    account = api.get("/billing/v1/accounts/A7", headers=AUTH).json()
    assert account["balance"] == "80.00" and account["due_date"] == "2026-11-20"
    assert [p["payment_id"] for p in account["payments"]] == ["P1"]
    assert api.get("/billing/v1/accounts/nobody", headers=AUTH).status_code == 404
    assert api.get("/billing/v1/accounts/A7").status_code == 401


def test_payments_import(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AMIFLOW_DATABASE_URL", db_url)
    good = tmp_path / "payments.csv"
    good.write_text(
        "payment_id,account,amount,currency,paid_at\n"
        "F1,A1,10.00,USD,2026-11-01T10:00:00Z\n"
        "F2,A2,20.50,USD,2026-11-02T10:00:00+02:00\n"
    )
    assert main(["payments", "import", str(good)]) == 0
    assert "2 new" in capsys.readouterr().out
    assert main(["payments", "import", str(good)]) == 0  # re-import: no-op
    assert "0 new, 2 already known" in capsys.readouterr().out

    bad = tmp_path / "bad.csv"
    bad.write_text(
        "payment_id,account,amount,currency,paid_at\n"
        "F1,A1,11.00,USD,2026-11-01T10:00:00Z\n"  # conflict with the first import
        "F3,A3,12.345,USD,2026-11-01T10:00:00Z\n"  # bad amount
        "F4,A4,5.00,USD,2026-11-03T09:00:00Z\n"  # fine
    )
    assert main(["payments", "import", str(bad)]) == 1
    captured = capsys.readouterr()
    assert "1 new" in captured.out and "1 conflicting" in captured.out and "1 invalid" in captured.out
    assert f"{bad}:2:" in captured.err and f"{bad}:3: amount" in captured.err

    balances = tmp_path / "balances.csv"
    balances.write_text("account,balance,currency,as_of,due_date\nA1,99.90,USD,2026-11-10T00:00:00Z,2026-11-30\n")
    assert main(["payments", "import", str(balances)]) == 0
    with psycopg.connect(db_url) as conn:
        paid = conn.execute("SELECT payment_id, amount FROM amiflow.payments ORDER BY 1").fetchall()
        a1 = conn.execute("SELECT balance, due_date::text FROM amiflow.accounts WHERE account = 'A1'").fetchone()
    assert paid == [("F1", Decimal("10.00")), ("F2", Decimal("20.50")), ("F4", Decimal("5.00"))]
    assert a1 == (Decimal("99.90"), "2026-11-30")

    unknown = tmp_path / "other.csv"
    unknown.write_text("a,b\n1,2\n")
    assert main(["payments", "import", str(unknown)]) == 2
    assert "expected a header" in capsys.readouterr().err
