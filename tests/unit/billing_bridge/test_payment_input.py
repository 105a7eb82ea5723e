"""Bad payment input is refused before it reaches the database: implausible or numeric timestamps, repeated JSON
keys, oversized bodies (issue 19)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import psycopg
import pytest
from fastapi.testclient import TestClient

from amiflow.db import Database
from amiflow.plausibility import Window
from amiflow.settings import Settings
from billing_bridge.api import create_app
from billing_bridge.payments import import_csv

AUTH = {"Authorization": "Bearer tok", "Content-Type": "application/json"}
RECENT = (datetime.now(UTC) - timedelta(days=3)).isoformat()
PAYMENT = {"payment_id": "P1", "account": "A1", "amount": "12.50", "currency": "USD", "paid_at": RECENT}
BALANCE = {"account": "A1", "balance": "80.00", "currency": "USD", "as_of": RECENT}


class NoDatabase:
    """Fails the test if a request gets as far as the database."""

    @property
    def pool(self) -> Any:
        raise AssertionError("the database was reached")


def client(**settings: Any) -> TestClient:
    return TestClient(create_app(Settings(api_token="tok", **settings), database=cast(Database, NoDatabase())))


def post(c: TestClient, path: str, body: dict[str, Any]) -> Any:
    return c.post(f"/billing/v1/{path}", content=json.dumps(body), headers=AUTH)


@pytest.mark.parametrize(
    ("paid_at", "reason"),
    [
        ("0001-01-01T00:00:00+01:00", "plausibility window"),  # the year 1 BC once stored in UTC
        ("9999-12-31T23:59:59Z", "plausibility window"),
        ((datetime.now(UTC) + timedelta(days=2)).isoformat(), "after now"),
        (1_793_491_200, "not a number"),  # a bare epoch
        ("1793491200", "not a number"),
    ],
)
def test_implausible_paid_at_is_refused_with_the_reason(paid_at: Any, reason: str) -> None:
    with client() as c:
        response = post(c, "payments", {**PAYMENT, "paid_at": paid_at})
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"][-1] == "paid_at" and reason in error["msg"]


@pytest.mark.parametrize(
    "change",
    [
        {"as_of": "0001-01-01T00:00:00+01:00"},
        {"as_of": 1_793_491_200},
        {"due_date": "0001-01-01"},
        {"due_date": "9999-12-31"},
        {"due_date": 20261120},
    ],
)
def test_implausible_balance_statements_are_refused(change: dict[str, Any]) -> None:
    with client() as c:
        response = post(c, "balances", {**BALANCE, **change})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][-1] == next(iter(change))


def test_the_window_is_configurable() -> None:
    with client(plausible_past_days=1) as c:
        response = post(c, "payments", PAYMENT)  # three days old
    assert response.status_code == 422 and "1 days before now" in response.text
    with client(plausible_past_days=5) as c, pytest.raises(AssertionError, match="database was reached"):
        post(c, "payments", PAYMENT)


def test_a_repeated_json_key_is_refused() -> None:
    body = json.dumps(PAYMENT)[:-1] + ', "amount": "999.00"}'
    with client() as c:
        response = c.post("/billing/v1/payments", content=body, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {"loc": ["body", "amount"], "msg": "key 'amount' appears more than once", "type": "duplicate_key"}
    ]
    nested = json.dumps(BALANCE)[:-1] + ', "x": {"a": 1, "a": 2}}'
    with client() as c:
        response = c.post("/billing/v1/balances", content=nested, headers=AUTH)
    assert response.status_code == 422 and response.json()["detail"][0]["type"] == "duplicate_key"


def test_bodies_over_the_limit_get_413_before_authentication() -> None:
    big = json.dumps({**PAYMENT, "pad": "x" * 2000})
    with client(api_max_body_bytes=1024) as c:
        declared = c.post("/billing/v1/payments", content=big, headers=AUTH)
        unauthenticated = c.post("/billing/v1/payments", content=big)

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it streams
            for i in range(0, len(big), 100):
                yield big[i : i + 100].encode()

        streamed = c.post("/billing/v1/payments", content=chunks(), headers=AUTH)
        small = c.post("/billing/v1/payments", content=json.dumps({**PAYMENT, "paid_at": 1}), headers=AUTH)
    assert declared.status_code == unauthenticated.status_code == streamed.status_code == 413
    assert "AMIFLOW_API_MAX_BODY_BYTES" in declared.json()["detail"]
    assert small.status_code == 422  # under the limit: parsed as before


def test_import_reports_implausible_rows_by_line() -> None:
    text = (
        "payment_id,account,amount,currency,paid_at\n"
        "F1,A1,10.00,USD,0001-01-01T00:00:00+01:00\n"
        "F2,A1,10.00,USD,9999-12-31T23:59:59Z\n"
        "F3,A1,10.00,USD,1793491200\n"
    )
    now = datetime(2026, 12, 7, tzinfo=UTC)
    report = import_csv(cast(psycopg.Connection[Any], None), text, window=Window.from_days(3650, 3600), now=now)
    assert report.created == 0
    assert [line for line, _ in report.errors] == [2, 3, 4]
    assert all(msg.startswith("paid_at: ") for _, msg in report.errors)
    assert "plausibility window" in report.errors[0][1] and "not a number" in report.errors[2][1]
