"""The customers' usage API on a real database: a customer token opens its own account only, operators see all, the
feed is the same as the CLI's, bad input is 404/422 with the reason, and the routes hold under schemathesis."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from psycopg_pool import ConnectionPool

from amiflow.settings import Settings
from amiflow_app.api_usage import create_usage_router
from billing_bridge.customer import customer_token, token_account
from tests.integration.test_usage_export import _channels, _store_sums, _validate, fill_store

OPERATOR = {"Authorization": "Bearer operator-token"}
FEED = "/usage/v1/accounts/{account}/meters/{meter}/greenbutton"
NOVEMBER = {"from": "2026-11-01", "to": "2026-12-01"}


@pytest.fixture
def store(db_conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    return fill_store(db_conn)


@pytest.fixture
def pool(db_url: str) -> Iterator[ConnectionPool[Any]]:
    with ConnectionPool(db_url, min_size=1, max_size=4, kwargs={"autocommit": True}) as p:
        yield p


@pytest.fixture
def settings(db_url: str) -> Settings:
    return Settings(database_url=db_url, api_token="operator-token")


@pytest.fixture
def client(store: psycopg.Connection[Any], pool: ConnectionPool[Any], settings: Settings) -> TestClient:
    app = FastAPI()
    app.include_router(create_usage_router(settings, pool))
    return TestClient(app)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_customer_reads_only_its_own_account(client: TestClient, settings: Settings) -> None:
    mine = _bearer(customer_token(settings, "ACC-1"))
    got = client.get(FEED.format(account="ACC-1", meter="M1"), params=NOVEMBER, headers=mine)
    assert got.status_code == 200 and got.headers["content-type"].startswith("application/atom+xml")
    _validate(got.content)
    other = client.get(FEED.format(account="ACC-2", meter="M2"), params=NOVEMBER, headers=mine)
    assert other.status_code == 403 and "another account" in other.json()["detail"]
    # a meter of another account through one's own account path is simply not there
    assert client.get(FEED.format(account="ACC-1", meter="M2"), params=NOVEMBER, headers=mine).status_code == 404
    assert client.get(FEED.format(account="ACC-1", meter="M1"), params=NOVEMBER).status_code == 401
    forged = customer_token(Settings(api_token="another-secret"), "ACC-1")
    feed = FEED.format(account="ACC-1", meter="M1")
    assert client.get(feed, params=NOVEMBER, headers=_bearer(forged)).status_code == 401
    assert token_account(settings, forged) is None and token_account(settings, "cu1.x.y") is None


def test_the_operator_reads_any_account_and_the_sums_hold(client: TestClient, store: psycopg.Connection[Any]) -> None:
    from datetime import date

    got = client.get(FEED.format(account="ACC-1", meter="M1"), params=NOVEMBER, headers=OPERATOR)
    assert got.status_code == 200
    sums = _store_sums(store, date(2026, 11, 1), date(2026, 12, 1))
    imp = _channels(got.content)[1]
    total = sum(v for _, v, _ in imp["readings"]) * 10.0 ** imp["type"]["powerOfTenMultiplier"]
    assert total == pytest.approx(sums["1-0:1.29.0"], abs=1e-6)
    csv = client.get(FEED.format(account="ACC-1", meter="M1"), params={**NOVEMBER, "format": "csv"}, headers=OPERATOR)
    assert csv.status_code == 200 and csv.text.startswith("start_utc,end_utc,local_start,kwh_import")


def test_insights_route(client: TestClient, settings: Settings) -> None:
    url = "/usage/v1/accounts/ACC-1/meters/M1/insights"
    got = client.get(url, params={"period": "2026-11"}, headers=_bearer(customer_token(settings, "ACC-1")))
    assert got.status_code == 200
    data = got.json()
    assert data["meter"] == "M1" and data["tariffs"] and all(isinstance(t["total"], str) for t in data["tariffs"])
    assert client.get(url, params={"period": "2026-13"}, headers=OPERATOR).status_code == 422


@pytest.mark.parametrize(
    ("account", "meter", "params", "status", "words"),
    [
        ("NOPE", "M1", NOVEMBER, 404, "unknown account 'NOPE'"),
        ("A%00B", "M1", NOVEMBER, 404, "unknown account"),  # NUL: PostgreSQL text cannot hold it, never a 500
        ("ACC-1", "M%001", NOVEMBER, 404, "unknown meter"),
        ("ACC-1", "NOPE", NOVEMBER, 404, "unknown meter 'NOPE' of account 'ACC-1'"),
        ("ACC-2", "M2", NOVEMBER, 404, "meter 'M2' has no interval readings"),
        ("ACC-1", "M1", {"from": "2026-12-01", "to": "2026-11-01"}, 422, "is empty"),
        ("ACC-1", "M1", {"from": "2026-11-01", "to": "2026-11-01"}, 422, "is empty"),
        ("ACC-1", "M1", {"from": "2024-01-01", "to": "2024-02-01"}, 404, "no intervals in 2024-01-01..2024-02-01"),
    ],
)
def test_bad_input(
    client: TestClient, account: str, meter: str, params: dict[str, str], status: int, words: str
) -> None:
    got = client.get(FEED.format(account=account, meter=meter), params=params, headers=OPERATOR)
    assert got.status_code == status and words in got.json()["detail"], got.text


def test_the_routes_hold_under_schemathesis(client: TestClient) -> None:
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings

    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 2
    for operation in operations:

        @given(case=operation.as_strategy())
        @hsettings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            case.call_and_validate(headers=OPERATOR)

        check()


def test_serve_app_mounts_the_usage_routes(
    store: psycopg.Connection[Any], pool: ConnectionPool[Any], settings: Settings
) -> None:
    from amiflow_app.api import create_app

    client = TestClient(create_app(pool, settings=settings))
    token = _bearer(customer_token(settings, "ACC-1"))
    got = client.get(
        FEED.format(account="ACC-1", meter="M1"), params={"from": "2026-11-01", "to": "2026-11-02"}, headers=token
    )
    assert got.status_code == 200 and b"<espi:UsagePoint>" in got.content
    assert client.get("/meters", headers=token).status_code == 403  # a customer token opens nothing else
