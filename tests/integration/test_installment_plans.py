"""Installment plans on a real PostgreSQL: a plan splits the overdue bills, suspends the reminder ladder and blocks
the disconnect (rule ``installment_plan``, recorded with the decision); a missed installment past the grace breaks
it, billing hears of it through the outbox and the ladder resumes the same run; the CLI and the HTTP API make and
show the same plans."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from psycopg_pool import ConnectionPool

from amiflow.db.registry import MeterRecord, add_meter
from amiflow.settings import Settings
from amiflow_app.api_plans import create_plans_router
from amiflow_app.cli import main
from billing_bridge import plan_disconnects
from billing_bridge.payments import PaymentIn, record_payment
from billing_bridge.plans import PlanRefused, create_plan, list_plans, load_plan_terms, plan_standing
from billing_bridge.policy import load_ruleset
from billing_bridge.reminders import send_reminders

US = load_ruleset("us_tx")
TERMS = load_plan_terms("us_tx")
D = Decimal
CREATED = datetime(2026, 2, 25, 16, tzinfo=UTC)  # Wednesday, 10:00 in Chicago


def _bill(conn: psycopg.Connection[Any], bill_id: str, account: str, start: str, end: str, total: str) -> None:
    conn.execute(
        "INSERT INTO amiflow.bills (bill_id, version, account, meter, period_start, period_end, tariff_id,"
        " tariff_version, total, currency, content_hash, body) VALUES (%s, 1, %s, %s, %s, %s, 'T', 1, %s, 'USD',"
        " 'h', '{}')",
        (bill_id, account, f"M-{account}", start, end, total),
    )


def _owing(conn: psycopg.Connection[Any], account: str, total: str = "300.00") -> None:
    add_meter(conn, MeterRecord(name=f"M-{account}", protocol="mqtt", account=account, feeder="F1",
                                timezone="America/Chicago"))  # fmt: skip
    _bill(conn, f"B-JAN-{account}", account, "2026-01-01", "2026-01-31", total)  # due 2026-02-21


def _pay(conn: psycopg.Connection[Any], account: str, amount: str, at: datetime, n: int) -> None:
    record_payment(conn, PaymentIn(payment_id=f"P-{account}-{n}", account=account, amount=amount, currency="USD",
                                   paid_at=at), "api")  # fmt: skip


def _notices(conn: psycopg.Connection[Any], account: str) -> list[str]:
    rows = conn.execute(
        "SELECT payload->>'type' FROM amiflow.outbox WHERE kind = 'notice' AND account = %s ORDER BY id", (account,)
    ).fetchall()
    return [r[0] for r in rows]


def _days(conn: psycopg.Connection[Any], first: date, last: date) -> list[tuple[str, str, date]]:
    sent = []
    day = first
    while day <= last:
        now = datetime(day.year, day.month, day.day, 15, tzinfo=UTC)
        sent += [(n.account, n.type, day) for n in send_reminders(conn, US, now=now)]
        day += timedelta(days=1)
    return sent


def test_a_plan_suspends_the_ladder_blocks_the_disconnect_and_breaks_when_missed(
    db_conn: psycopg.Connection[Any],
) -> None:
    _owing(db_conn, "ACC-P")
    assert _days(db_conn, date(2026, 2, 22), date(2026, 2, 24)) == [("ACC-P", "payment_reminder", date(2026, 2, 24))]
    plan = create_plan(db_conn, US, TERMS, account="ACC-P", installments=3, now=CREATED)
    assert plan.overdue_amount == D("300.00") and plan.down_payment == D("30.00") and plan.state == "active"
    assert [(i.number, i.due_date, i.amount) for i in plan.installments] == [
        (0, date(2026, 2, 25), D("30.00")), (1, date(2026, 3, 27), D("90.00")),
        (2, date(2026, 4, 27), D("90.00")), (3, date(2026, 5, 27), D("90.00")),
    ]  # fmt: skip
    assert plan.debt_refs == ("bill:B-JAN-ACC-P",)
    _pay(db_conn, "ACC-P", "30.00", CREATED + timedelta(hours=1), 1)
    # a new bill arrives during the plan and is paid before its due date: it is paid, not a prepayment
    _bill(db_conn, "B-FEB-ACC-P", "ACC-P", "2026-02-01", "2026-02-28", "80.00")  # due 2026-03-21
    _pay(db_conn, "ACC-P", "80.00", datetime(2026, 3, 20, 18, tzinfo=UTC), 2)
    # the ladder would send disconnect_warning on 03-03: under the plan nothing goes out
    assert _days(db_conn, date(2026, 2, 25), date(2026, 4, 1)) == []
    s = plan_standing(db_conn, US, plan, date(2026, 4, 1))
    assert s.state == "good_standing" and s.items[1].state == "due" and s.current[0].state == "paid"
    # the disconnect is blocked by the plan's own rule, recorded with the decision
    (item,) = plan_disconnects(db_conn, US, now=datetime(2026, 3, 26, 16, tzinfo=UTC), forecast_c=(4.0, 15.0))
    assert "installment_plan" in item.decision.blocking
    detail = {r.rule: r.detail for r in item.decision.results}["installment_plan"]
    assert detail == f"installment plan {plan.id} in good standing"
    stored = db_conn.execute("SELECT deciding_rules FROM amiflow.disconnect_decisions").fetchone()
    assert stored is not None and "installment_plan" in stored[0]
    # installment 1 (due 03-27) is unpaid after the 5-day grace: the plan breaks on 04-02 and the ladder resumes
    sent = _days(db_conn, date(2026, 4, 2), date(2026, 4, 2))
    assert sent == [("ACC-P", "disconnect_warning", date(2026, 4, 2))]
    assert _notices(db_conn, "ACC-P") == [
        "payment_reminder", "installment_plan_created", "installment_plan_broken", "disconnect_warning"
    ]  # fmt: skip
    (broken,) = list_plans(db_conn, account="ACC-P")
    assert broken.state == "broken" and broken.ended_at == datetime(2026, 4, 2, 15, tzinfo=UTC)
    payload = db_conn.execute(
        "SELECT payload FROM amiflow.outbox WHERE payload->>'type' = 'installment_plan_broken'"
    ).fetchone()
    assert payload is not None and [m["ref"] for m in payload[0]["missed"]] == ["1"]
    assert payload[0]["remaining"] == "270.00"
    assert _days(db_conn, date(2026, 4, 2), date(2026, 4, 2)) == []  # idempotent
    # one broken plan in 12 months: no new plan
    with pytest.raises(PlanRefused) as refused:
        create_plan(db_conn, US, TERMS, account="ACC-P", installments=2, now=datetime(2026, 4, 3, 16, tzinfo=UTC))
    assert refused.value.reason == "broken_recently"


def test_a_plan_paid_off_is_completed_and_the_ladder_does_not_return(db_conn: psycopg.Connection[Any]) -> None:
    _owing(db_conn, "ACC-K", "100.00")
    plan = create_plan(db_conn, US, TERMS, account="ACC-K", installments=2, down_payment=D("20.00"), now=CREATED)
    assert [i.amount for i in plan.installments] == [D("20.00"), D("40.00"), D("40.00")]
    _pay(db_conn, "ACC-K", "20.00", CREATED, 1)
    _pay(db_conn, "ACC-K", "80.00", CREATED + timedelta(days=2), 2)
    assert _days(db_conn, date(2026, 2, 25), date(2026, 3, 10)) == []
    (done,) = list_plans(db_conn, account="ACC-K")
    assert done.state == "completed" and done.ended_at == datetime(2026, 2, 27, 15, tzinfo=UTC)
    assert _notices(db_conn, "ACC-K") == ["installment_plan_created", "installment_plan_completed"]
    events = db_conn.execute("SELECT event FROM amiflow.plan_events ORDER BY id").fetchall()
    assert events == [("created",), ("completed",)]


def test_refusals_store_nothing(db_conn: psycopg.Connection[Any]) -> None:
    _owing(db_conn, "ACC-R")
    with pytest.raises(PlanRefused) as nothing:
        create_plan(db_conn, US, TERMS, account="ACC-R", installments=3, now=datetime(2026, 2, 1, tzinfo=UTC))
    assert nothing.value.reason == "nothing_overdue"
    with pytest.raises(PlanRefused) as many:
        create_plan(db_conn, US, TERMS, account="ACC-R", installments=12, now=CREATED)
    assert many.value.reason == "installments"
    create_plan(db_conn, US, TERMS, account="ACC-R", installments=3, now=CREATED)
    with pytest.raises(PlanRefused) as twice:
        create_plan(db_conn, US, TERMS, account="ACC-R", installments=3, now=CREATED)
    assert twice.value.reason == "plan_active"
    assert len(list_plans(db_conn)) == 1
    assert db_conn.execute("SELECT count(*) FROM amiflow.plan_events").fetchone() == (1,)


def test_the_cli_creates_lists_and_shows_plans(
    db_conn: psycopg.Connection[Any], db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AMIFLOW_DATABASE_URL", db_url)
    _owing(db_conn, "ACC-C")
    now = ["--now", CREATED.isoformat()]
    assert main(["plans", "create", "--account", "ACC-C", "--installments", "4", "--down-payment", "60.00",
                 "--start", "2026-03-15", "--json", *now]) == 0  # fmt: skip
    made = json.loads(capsys.readouterr().out)
    assert [i["amount"] for i in made["installments"]] == ["60.00", "60.00", "60.00", "60.00", "60.00"]
    assert made["installments"][1]["due_date"] == "2026-03-15"
    assert main(["plans", "list"]) == 0
    assert "ACC-C" in capsys.readouterr().out
    _pay(db_conn, "ACC-C", "60.00", CREATED, 1)
    assert main(["plans", "show", str(made["plan_id"]), "--now", "2026-03-16T16:00:00Z"]) == 0
    shown = capsys.readouterr().out
    assert "down payment" in shown and "standing on 2026-03-16: good_standing" in shown
    assert main(["plans", "create", "--account", "ACC-C", "--installments", "2", *now]) == 1
    assert "already has plan" in capsys.readouterr().err
    assert main(["plans", "show", "999"]) == 2


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    with ConnectionPool(db_url, min_size=1, max_size=2, kwargs={"autocommit": True}) as pool:
        app = FastAPI()
        app.include_router(create_plans_router(Settings(database_url=db_url, api_token="tok"), pool))
        yield TestClient(app)


def test_the_api_makes_and_shows_plans(db_conn: psycopg.Connection[Any], client: TestClient) -> None:
    auth = {"Authorization": "Bearer tok"}
    # the API plans as of today: a bill whose due date lies 40 days back
    end = (datetime.now(UTC) - timedelta(days=61)).date()
    add_meter(db_conn, MeterRecord(name="M-ACC-A", protocol="mqtt", account="ACC-A"))
    _bill(db_conn, "B-ACC-A", "ACC-A", (end - timedelta(days=30)).isoformat(), end.isoformat(), "150.00")
    assert client.post("/billing/v1/plans", json={"account": "ACC-A", "installments": 3}).status_code == 401
    refused = client.post("/billing/v1/plans", json={"account": "ACC-A", "installments": 30}, headers=auth)
    assert refused.status_code == 422 and refused.json()["reason"] == "installments"
    made = client.post("/billing/v1/plans", json={"account": "ACC-A", "installments": 3, "down_payment": "15.00"},
                       headers=auth)  # fmt: skip
    assert made.status_code == 201, made.text
    plan = made.json()
    assert plan["overdue_amount"] == "150.00" and [i["amount"] for i in plan["installments"]][:2] == ["15.00", "45.00"]
    again = client.post("/billing/v1/plans", json={"account": "ACC-A", "installments": 3}, headers=auth)
    assert again.status_code == 409 and again.json()["reason"] == "plan_active"
    listed = client.get("/billing/v1/plans", params={"account": "ACC-A"}, headers=auth).json()
    assert [p["plan_id"] for p in listed] == [plan["plan_id"]]
    shown = client.get(f"/billing/v1/plans/{plan['plan_id']}", headers=auth).json()
    assert shown["standing"]["state"] == "good_standing" and shown["standing"]["items"][0]["state"] == "due"
    assert client.get("/billing/v1/plans/424242", headers=auth).status_code == 404
