"""The HTTP API's roles on a real database: stored API keys (hashed) of the operator, billing, metrics and customer
roles open exactly their routes; anonymous callers never reach a write route nor, unless reads are public, a read
route; AMIFLOW_API_TOKEN stays the operator key; revoked and expired keys open nothing."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg_pool import ConnectionPool

from amiflow.db import Database
from amiflow.settings import Settings
from amiflow_app.api import create_app
from amiflow_app.cli import main
from billing_bridge.api_keys import create_key, revoke_key

PAID_AT = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 600))
READS = [
    "/meters",
    "/meters/A1",
    "/meters/A1/readings?start=2026-11-01T00:00:00Z&end=2026-11-02T00:00:00Z",
    "/bills",
    "/billing/v1/plans",
]
OWN = ["/accounts/ACC1", "/bills?account=ACC1", "/billing/v1/accounts/ACC1", "/billing/v1/plans?account=ACC1"]
OTHERS = ["/accounts/ACC2", "/bills?account=ACC2", "/billing/v1/accounts/ACC2", "/bills?account=ACC1&account=ACC2"]
USAGE = "/usage/v1/accounts/{a}/meters/{m}/insights?period=2026-11"
WRITES = [
    ("/billing/v1/payments", {"payment_id": "P1", "account": "ACC1", "amount": "5.00", "currency": "USD",
                              "paid_at": PAID_AT}),
    ("/billing/v1/balances", {"account": "ACC1", "balance": "10.00", "currency": "USD", "as_of": PAID_AT}),
    ("/billing/v1/plans", {"account": "ACC1", "installments": 3}),
]  # fmt: skip
GUARD = (401, 403, 503)  # the answers of the guard; anything else means the route itself answered


@pytest.fixture
def api(db_url: str, db_conn: psycopg.Connection[Any]) -> Iterator[tuple[Any, dict[str, dict[str, str]]]]:
    for meter, account in (("A1", "ACC1"), ("B1", "ACC2")):
        sql = "INSERT INTO amiflow.meters (name, protocol, account) VALUES (%s, 'mqtt', %s)"
        db_conn.execute(sql, (meter, account))
        db_conn.execute("INSERT INTO amiflow.accounts (account, currency) VALUES (%s, 'USD')", (account,))
    keys = {role: create_key(db_conn, f"{role}-key", role)[1] for role in ("operator", "billing", "metrics")}
    keys["customer"] = create_key(db_conn, "customer-key", "customer", account="ACC1")[1]
    keys["revoked"] = create_key(db_conn, "gone", "operator")[1]
    revoke_key(db_conn, "gone")
    keys["expired"] = create_key(db_conn, "old", "operator", expires_at=datetime.now(UTC) - timedelta(seconds=1))[1]
    headers = {who: {"Authorization": f"Bearer {key}"} for who, key in keys.items()}
    headers["token"] = {"Authorization": "Bearer op-token"}
    headers["anonymous"] = {}
    database = Database(db_url)
    with ConnectionPool(db_url, min_size=1, max_size=4, kwargs={"autocommit": True}) as pool:

        def build(**settings: Any) -> TestClient:
            return TestClient(create_app(pool, settings=Settings(**settings), database=database))

        yield build, headers
    database.close()


def _get(client: TestClient, path: str, headers: dict[str, str]) -> int:
    return int(client.get(path, headers=headers).status_code)


def test_keys_are_stored_hashed(db_conn: psycopg.Connection[Any]) -> None:
    record, key = create_key(db_conn, "grafana", "metrics")
    row = db_conn.execute("SELECT key_sha256, prefix, row_to_json(k)::text FROM amiflow.api_keys k").fetchone()
    assert row is not None and bytes(row[0]) == hashlib.sha256(key.encode()).digest()
    assert key not in row[2] and key.startswith(row[1]) and len(row[1]) == 10 and record.role.value == "metrics"


def test_each_role_opens_exactly_its_routes(api: Any) -> None:
    build, h = api
    c = build()  # nothing configured but the stored keys
    usage_own, usage_other = USAGE.format(a="ACC1", m="A1"), USAGE.format(a="ACC2", m="B1")
    for who in ("operator", "billing", "metrics"):
        for path in READS + OWN + OTHERS:
            assert _get(c, path, h[who]) not in GUARD, (who, path)
    for path in READS + OTHERS:
        assert _get(c, path, h["customer"]) == 403, path
    for path in OWN:
        assert _get(c, path, h["customer"]) not in GUARD, path
    assert _get(c, usage_own, h["customer"]) not in GUARD and _get(c, usage_other, h["customer"]) == 403
    assert _get(c, usage_own, h["operator"]) not in GUARD
    assert _get(c, usage_own, h["billing"]) == 403 and _get(c, usage_own, h["metrics"]) == 403  # personal data
    for path, body in WRITES:
        for who in ("operator", "billing"):
            assert c.post(path, json=body, headers=h[who]).status_code not in GUARD, (who, path)
        for who in ("metrics", "customer"):
            assert c.post(path, json=body, headers=h[who]).status_code == 403, (who, path)
    for who in ("revoked", "expired"):
        assert _get(c, "/meters", h[who]) == 401
        assert c.post(WRITES[0][0], json=WRITES[0][1], headers=h[who]).status_code == 401


def test_the_static_token_stays_the_operator_key(api: Any) -> None:
    build, h = api
    c = build(api_token="op-token")
    assert all(_get(c, path, h["token"]) not in GUARD for path in READS + OWN + [USAGE.format(a="ACC1", m="A1")])
    assert c.post(WRITES[0][0], json=WRITES[0][1], headers=h["token"]).status_code not in GUARD
    assert _get(c, "/meters", h["operator"]) not in GUARD  # stored keys work beside it


def test_no_operation_answers_an_anonymous_caller(api: Any) -> None:
    build, _ = api
    c = build(api_token="op-token", billing_secret="sec")
    spec = c.get("/openapi.json").json()
    operations = [(m, p) for p, ops in spec["paths"].items() for m in ops if p not in ("/health", "/metrics")]
    assert len(operations) >= 12
    for method, path in operations:
        concrete = path.replace("{meter}", "A1").replace("{account}", "ACC1").replace("{plan_id}", "1")
        answer = c.request(method.upper(), concrete, json={} if method == "post" else None)
        assert answer.status_code == 401, (method, path, answer.status_code)
        documented = spec["paths"][path][method]["responses"]
        assert {"401", "403"} <= set(documented), (method, path)  # the spec says so, for schemathesis and clients
    public = build(api_token="op-token", api_public_reads=True)
    assert all(public.post(path, json=body).status_code == 401 for path, body in WRITES)  # writes never public
    assert _get(public, USAGE.format(a="ACC1", m="A1"), {}) == 401  # usage is never public
    locked = build()  # no static credentials, but stored keys: a lock (401), not a closed API
    assert _get(locked, "/meters", {}) == 401 and locked.post(WRITES[0][0], json=WRITES[0][1]).status_code == 401


def test_without_any_credentials_the_api_is_closed(api: Any, db_conn: psycopg.Connection[Any]) -> None:
    build, _ = api
    db_conn.execute("UPDATE amiflow.api_keys SET revoked_at = now()")
    closed = build()
    assert _get(closed, "/meters", {}) == 503 and closed.post(WRITES[0][0], json=WRITES[0][1]).status_code == 503
    assert "API closed" in closed.get("/meters").json()["detail"]


def test_metrics_can_require_a_metrics_key(api: Any) -> None:
    build, h = api
    assert _get(build(), "/metrics", {}) == 200  # open by default, for scrapers (CONTRACT.md)
    c = build(api_metrics_auth=True)
    assert _get(c, "/metrics", {}) in (401, 503) and _get(c, "/metrics", h["revoked"]) == 401
    assert _get(c, "/metrics", h["metrics"]) == 200 and _get(c, "/metrics", h["operator"]) == 200
    assert _get(c, "/metrics", h["billing"]) == 403 and _get(c, "/metrics", h["customer"]) == 403
    assert _get(c, "/health", {}) == 200
    assert "amiflow_outbox_pending 0" in c.get("/metrics", headers=h["metrics"]).text


def test_the_api_keys_commands(api: Any, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    build, _ = api
    monkeypatch.setenv("AMIFLOW_DATABASE_URL", db_url)
    assert main(["api-keys", "create", "--name", "ops-2", "--role", "operator"]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("amk_") and len(key) == 47
    c = build()
    assert _get(c, "/meters", {"Authorization": f"Bearer {key}"}) == 200
    assert main(["api-keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert "ops-2" in listing and "active" in listing and key not in listing
    assert main(["api-keys", "revoke", "ops-2"]) == 0
    assert _get(c, "/meters", {"Authorization": f"Bearer {key}"}) == 401  # at once
    assert main(["api-keys", "create", "--name", "c", "--role", "customer"]) == 2  # a customer key needs --account
    assert main(["api-keys", "revoke", "ops-2"]) == 2
    assert "no active API key" in capsys.readouterr().err
