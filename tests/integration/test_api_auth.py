"""Every read route of the service API takes the write routes' credentials unless reads are configured public, and
every body is size-limited (issue 19)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg_pool import ConnectionPool

from amiflow.db import Database
from amiflow.settings import Settings
from amiflow_app.api import create_app
from billing_bridge.delivery import sign

READS = ["/meters", "/meters/A1", "/meters/A1/readings?start=2026-11-01T00:00:00Z&end=2026-11-02T00:00:00Z"]
READS += ["/bills", "/bills?account=ACC1", "/accounts/ACC1", "/billing/v1/accounts/ACC1"]


@pytest.fixture
def app_for(db_url: str, db_conn: psycopg.Connection[Any]) -> Iterator[Any]:
    db_conn.execute("INSERT INTO amiflow.meters (name, protocol, account) VALUES ('A1', 'mqtt', 'ACC1')")
    db_conn.execute("INSERT INTO amiflow.accounts (account, currency) VALUES ('ACC1', 'USD')")
    database = Database(db_url)
    with ConnectionPool(db_url, min_size=1, max_size=2, kwargs={"autocommit": True}) as pool:

        def build(**settings: Any) -> TestClient:
            return TestClient(create_app(pool, settings=Settings(**settings), database=database))

        yield build
    database.close()


@pytest.mark.parametrize("path", READS)
def test_read_routes_need_credentials(app_for: Any, path: str) -> None:
    c = app_for(api_token="tok", billing_secret="sec")
    assert c.get(path).status_code == 401
    assert c.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.get(path, headers={"Authorization": "Bearer tok"}).status_code == 200
    assert c.get(path, headers={"X-Amiflow-Signature": sign(b"", b"sec")}).status_code == 200
    # the operations probes stay open
    assert c.get("/health").status_code == 200 and c.get("/metrics").status_code == 200


def test_reads_are_public_only_when_configured(app_for: Any) -> None:
    public = app_for(api_token="tok", api_public_reads=True)
    assert all(public.get(path).status_code == 200 for path in READS)
    assert public.post("/billing/v1/payments", json={}).status_code == 401  # writes never
    closed = app_for()
    response = closed.get("/meters")
    assert response.status_code == 503 and "AMIFLOW_API_PUBLIC_READS" in response.json()["detail"]
    assert app_for(api_public_reads=True).get("/meters").status_code == 200


def test_the_service_limits_body_size(app_for: Any) -> None:
    c = app_for(api_token="tok", api_max_body_bytes=2048)
    auth = {"Authorization": "Bearer tok", "Content-Type": "application/json"}
    assert c.post("/billing/v1/payments", content=b"{" + b" " * 4096 + b"}", headers=auth).status_code == 413
    assert c.post("/billing/v1/payments", content=b"{}", headers=auth).status_code == 422


@pytest.mark.parametrize("path", ["/bills?account=%00", "/meters/A%001", "/accounts/AC%00C1"])
def test_a_value_the_database_cannot_take_is_422_not_500(app_for: Any, path: str) -> None:
    c = app_for(api_token="tok")
    response = c.get(path, headers={"Authorization": "Bearer tok"})
    assert response.status_code in (404, 422), response.text
    assert "Traceback" not in response.text
