"""The inbound billing API refuses unauthenticated and invalid requests before touching the database."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient

from amiflow.db import Database
from amiflow.settings import Settings
from billing_bridge.api import create_app
from billing_bridge.delivery import sign

PAYMENT = {"payment_id": "P1", "account": "A1", "amount": "12.50", "currency": "USD", "paid_at": "2026-11-01T10:00:00Z"}


class NoDatabase:
    """Fails the test if a request gets as far as the database."""

    @property
    def pool(self) -> Any:
        raise AssertionError("the database was reached")


def client(**settings: Any) -> TestClient:
    app = create_app(Settings(**settings), database=cast(Database, NoDatabase()))
    return TestClient(app)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic dG9rOnRvaw=="},
        {"X-Amiflow-Signature": "sha256=" + "0" * 64},
    ],
)
def test_unauthenticated_requests_get_401(headers: dict[str, str]) -> None:
    with client(api_token="tok", billing_secret="sec") as c:
        response = c.post("/billing/v1/payments", json=PAYMENT, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_auth_is_checked_before_the_body_is_parsed() -> None:
    with client(api_token="tok") as c:
        response = c.post("/billing/v1/payments", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 401


def test_without_token_or_secret_the_api_is_closed() -> None:
    with client() as c:
        response = c.post("/billing/v1/payments", json=PAYMENT, headers={"Authorization": "Bearer "})
    assert response.status_code == 503


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount": 12.5}, "amount"),  # a binary float, not a decimal string
        ({"amount": "12.505"}, "amount"),  # more than cents
        ({"amount": "0.00"}, "amount"),
        ({"amount": "1e3"}, "amount"),
        ({"currency": "usd"}, "currency"),
        ({"paid_at": "2026-11-01T10:00:00"}, "paid_at"),  # no offset
        ({"paid_at": "yesterday"}, "paid_at"),
        ({"payment_id": ""}, "payment_id"),
        ({"account": "A 1"}, "account"),
        ({"extra": "x"}, "extra"),
    ],
)
def test_invalid_payments_get_422_naming_the_field(change: dict[str, Any], field: str) -> None:
    with client(api_token="tok") as c:
        response = c.post("/billing/v1/payments", json={**PAYMENT, **change}, headers={"Authorization": "Bearer tok"})
    assert response.status_code == 422
    assert field in json.dumps(response.json()["detail"])


def test_missing_field_and_bad_balance_get_422() -> None:
    with client(api_token="tok") as c:
        auth = {"Authorization": "Bearer tok"}
        missing = {k: v for k, v in PAYMENT.items() if k != "account"}
        assert c.post("/billing/v1/payments", json=missing, headers=auth).status_code == 422
        balance = {"account": "A1", "balance": "abc", "currency": "USD", "as_of": "2026-11-01T00:00:00Z"}
        assert c.post("/billing/v1/balances", json=balance, headers=auth).status_code == 422


def test_hmac_authentication_reaches_the_store() -> None:
    body = json.dumps(PAYMENT).encode()
    with client(billing_secret="sec") as c, pytest.raises(AssertionError, match="database was reached"):
        c.post(
            "/billing/v1/payments",
            content=body,
            headers={"X-Amiflow-Signature": sign(body, b"sec"), "Content-Type": "application/json"},
        )
