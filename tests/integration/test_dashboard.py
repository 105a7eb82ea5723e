"""The operations dashboard on a real database: every figure against rows whose answer is known, arrears that move
with a payment, and who may see the page, the figures and the WebSocket."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool
from starlette.websockets import WebSocketDisconnect

from amiflow.db.quarantine import quarantine
from amiflow.db.registry import MeterRecord, add_meter
from amiflow.db.writer import BatchWriter
from amiflow.settings import Settings
from amiflow.types import ReadingBatch
from amiflow_app.api import create_app
from amiflow_app.dashboard import FigureSource
from billing_bridge.payments import BalanceIn, PaymentIn, record_balance, record_payment
from billing_bridge.policy import load_ruleset

TOKEN = "dash-token"
RULESET = load_ruleset("us_tx")


@pytest.fixture
def pool(db_url: str) -> Iterator[ConnectionPool[Any]]:
    with ConnectionPool(db_url, min_size=1, max_size=4, kwargs={"autocommit": True}) as p:
        yield p


def _today() -> date:
    return datetime.now(UTC).astimezone(ZoneInfo(RULESET.timezone)).date()


def _bill(conn: psycopg.Connection[Any], bill_id: str, account: str, meter: str, end: date, total: str) -> None:
    conn.execute(
        "INSERT INTO amiflow.bills (bill_id, version, meter, account, period_start, period_end, tariff_id,"
        " tariff_version, total, currency, content_hash, body) VALUES (%s, 1, %s, %s, %s, %s, 'T', 1, %s, 'USD',"
        " %s, '{}')",
        (bill_id, meter, account, end.replace(day=1), end, total, bill_id),
    )


def _decision(conn: psycopg.Connection[Any], account: str, meter: str, allowed: bool, rules: list[str]) -> int:
    results = {"results": [{"rule": r, "blocks": not allowed, "detail": f"{r} says no"} for r in rules]}
    row = conn.execute(
        "INSERT INTO amiflow.disconnect_decisions (decided_at, account, meter, debt_ref, ruleset_id, ruleset_version,"
        " allowed, deciding_rules, results, inputs) VALUES (now(), %s, %s, 'd', 'us_tx', '1', %s, %s, %s, '{}')"
        " RETURNING id",
        (account, meter, allowed, rules, Jsonb(results)),
    ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def filled(db_conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """Meters heard now, 2 h ago, never and one inactive; 4 live readings; quarantine; bills; a statement; a
    payment; a pending disconnect and blocked ones."""
    now = datetime.now(UTC)
    add_meter(db_conn, MeterRecord("M1", "mqtt", account="A1"))
    add_meter(db_conn, MeterRecord("M2", "mqtt", account="S1"))
    add_meter(db_conn, MeterRecord("M3", "dlms", uri="dlms+tcp://127.0.0.1:4059"))
    add_meter(db_conn, MeterRecord("M4", "mqtt", status="inactive"))
    db_conn.execute("UPDATE amiflow.meters SET last_seen_at = %s WHERE name = 'M3'", (now - timedelta(hours=2),))
    db_conn.execute("UPDATE amiflow.meters SET last_seen_at = %s WHERE name = 'M1'", (now,))
    base = int(now.timestamp()) // 900 * 900
    writer = BatchWriter(db_conn)
    writer.write(ReadingBatch.from_columns("M1", "1-0:1.29.0", base - 900 * np.arange(4), [1.0] * 4, unit="Wh"))
    old = base - 30 * 86400  # a backfill of a month ago: stored now, but not a live reading
    writer.write(ReadingBatch.from_columns("M3", "1-0:1.29.0", old - 900 * np.arange(3), [1.0] * 3, unit="Wh"))
    for reason in ("bad_json", "bad_json", "unknown_meter"):
        quarantine(db_conn, source="mqtt", reason=reason, raw=b"{", meter="M1")
    db_conn.execute("UPDATE amiflow.quarantine SET received_at = now() - interval '3 days' WHERE reason <> 'bad_json'")
    today = _today()
    overdue_end = today - timedelta(days=RULESET.payment_terms_days + 95)  # due 95 days ago: the >90 band
    _bill(db_conn, "B-A1", "A1", "M1", overdue_end, "100.00")
    last_month_end = today.replace(day=1) - timedelta(days=1)
    _bill(db_conn, "B-A2", "A2", "M9", last_month_end, "50.50")
    db_conn.execute(
        "INSERT INTO amiflow.outbox (kind, idempotency_key, account, payload) VALUES ('bill', 'k1', 'A2', '{}')"
    )
    record_balance(db_conn, BalanceIn(account="S1", balance="250.00", currency="USD", as_of=now - timedelta(days=50),
                                      due_date=today - timedelta(days=45)), "api")  # fmt: skip
    record_payment(db_conn, PaymentIn(payment_id="P0", account="S1", amount="20.00", currency="USD",
                                      paid_at=now - timedelta(days=40)), "api")  # fmt: skip
    decision = _decision(db_conn, "A1", "M1", True, ["debt_threshold"])
    db_conn.execute(
        "INSERT INTO amiflow.meter_commands (id, meter, account, action, decision_id, created_at)"
        " VALUES (gen_random_uuid(), 'M1', 'A1', 'disconnect', %s, now())",
        (decision,),
    )
    _decision(db_conn, "S1", "M2", False, ["protected_category"])
    _decision(db_conn, "A9", "M9", False, ["winter"])  # not overdue (no debt): not listed
    return db_conn


def test_every_figure_from_known_rows(filled: psycopg.Connection[Any], pool: ConnectionPool[Any]) -> None:
    f = FigureSource(pool, RULESET).gather()
    assert f.readings.last_minute == 4 and sum(f.readings.per_minute) == 4  # the month-old backfill is not live
    assert (f.quarantine.last_24h, f.quarantine.total) == (2, 3)
    assert [(r.reason, r.last_24h, r.total) for r in f.quarantine.by_reason] == [("bad_json", 2, 2),
                                                                                 ("unknown_meter", 0, 1)]  # fmt: skip
    assert (f.silent.count, f.silent.never_seen, f.silent.active) == (2, 1, 3)
    assert [m.meter for m in f.silent.meters] == ["M2", "M3"]  # never heard from first
    last_month = _today().replace(day=1) - timedelta(days=1)
    assert f.bills.month == last_month.replace(day=1) and f.bills.issued == 1
    assert [(m.currency, m.amount) for m in f.bills.totals] == [("USD", "50.50")]
    assert f.bills.issued_today == 2 and f.bills.outbox == {"pending": 1, "delivered": 0, "rejected": 0}
    assert f.payments.count == 1 and [(m.currency, m.amount) for m in f.payments.totals] == [("USD", "20.00")]
    (usd,) = f.arrears.by_currency
    assert usd.currency == "USD" and usd.total == "330.00" and usd.accounts == 2
    assert [(b.band, b.amount, b.accounts) for b in usd.bands] == [
        ("0-30", "0.00", 0), ("31-60", "230.00", 1), ("61-90", "0.00", 0), (">90", "100.00", 1)]  # fmt: skip
    d = f.disconnects
    assert (d.pending, d.escalated, d.blocked) == (1, 0, 1)
    assert [(c.meter, c.state) for c in d.commands] == [("M1", "pending")]
    assert [(b.account, b.rules, b.detail) for b in d.decisions] == [
        ("S1", ["protected_category"], ["protected_category says no"])
    ]
    assert d.blocked_by_rule == {"protected_category": 1}


def test_a_payment_moves_the_arrears(filled: psycopg.Connection[Any], pool: ConnectionPool[Any]) -> None:
    source = FigureSource(pool, RULESET)
    assert source.gather().arrears.by_currency[0].bands[1].amount == "230.00"
    record_payment(filled, PaymentIn(payment_id="P1", account="S1", amount="230.00", currency="USD",
                                     paid_at=datetime.now(UTC)), "api")  # fmt: skip
    f = source.gather()  # the same source: its cached arrears must see the new payment
    (usd,) = f.arrears.by_currency
    assert usd.total == "100.00" and usd.bands[1].amount == "0.00" and usd.accounts == 1
    assert f.disconnects.blocked == 0  # S1 paid up: its blocked decision is no longer an open case
    assert f.payments.count == 2


def _client(pool: ConnectionPool[Any], db_url: str, **settings: Any) -> TestClient:
    return TestClient(create_app(pool, settings=Settings(database_url=db_url, **settings)))


def test_login_cookie_opens_page_figures_and_events(pool: ConnectionPool[Any], db_url: str) -> None:
    client = _client(pool, db_url, api_token=TOKEN)
    page = client.get("/dashboard")
    assert page.status_code == 401 and 'name="token"' in page.text
    assert client.get("/dashboard/figures").status_code == 401
    wrong = client.post("/dashboard/login", data={"token": "nope"})
    assert wrong.status_code == 401 and "not the API token" in wrong.text
    ok = client.post("/dashboard/login", data={"token": TOKEN}, follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "/dashboard"
    cookie = ok.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/dashboard" in cookie
    assert TOKEN not in cookie
    page = client.get("/dashboard")
    assert page.status_code == 200 and 'data-figure="arrears-total"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/dashboard/figures").json()["type"] == "figures"
    with client.websocket_connect("/dashboard/events") as ws:
        assert ws.receive_json()["type"] == "figures"
    client.post("/dashboard/logout")
    assert client.get("/dashboard").status_code == 401


def test_bearer_works_for_scripts_and_a_bad_cookie_does_not(pool: ConnectionPool[Any], db_url: str) -> None:
    client = _client(pool, db_url, api_token=TOKEN)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/dashboard/figures", headers=bearer).status_code == 200
    with client.websocket_connect("/dashboard/events", headers=bearer) as ws:
        assert ws.receive_json()["type"] == "figures"
    expired = f"{int(time.time()) - 1}.00"
    for value in (expired, "9999999999.forged", "garbage"):
        client.cookies.set("amiflow_dashboard", value, path="/dashboard")
        assert client.get("/dashboard/figures").status_code == 401
        with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect("/dashboard/events") as ws:
            ws.receive_json()
        assert closed.value.code == 4401


def test_another_sites_page_cannot_open_the_socket_or_log_in(pool: ConnectionPool[Any], db_url: str) -> None:
    client = _client(pool, db_url, api_token=TOKEN)
    evil = {"Origin": "https://evil.example", "Authorization": f"Bearer {TOKEN}"}
    with pytest.raises(WebSocketDisconnect), client.websocket_connect("/dashboard/events", headers=evil) as ws:
        ws.receive_json()
    refused = client.post("/dashboard/login", data={"token": TOKEN}, headers={"Origin": "https://evil.example"})
    assert refused.status_code == 403 and "set-cookie" not in refused.headers


def test_closed_without_credentials_and_open_with_public_reads(pool: ConnectionPool[Any], db_url: str) -> None:
    closed = _client(pool, db_url)
    page = closed.get("/dashboard")
    assert page.status_code == 503 and "AMIFLOW_API_TOKEN" in page.text and 'name="token"' not in page.text
    assert closed.get("/dashboard/figures").status_code == 503
    public = _client(pool, db_url, api_public_reads=True)
    assert public.get("/dashboard").status_code == 200
    assert public.get("/dashboard/figures").status_code == 200
    with public.websocket_connect("/dashboard/events") as ws:
        assert ws.receive_json()["type"] == "figures"
