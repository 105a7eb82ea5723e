"""Arrears -> reminders -> policy decisions -> relay commands over MQTT -> payment -> reconnect, on a real
PostgreSQL and a real broker, with a small fake MQTT meter that obeys ``cmd`` as CONTRACT.md describes."""

from __future__ import annotations

import json
import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from amiflow.db.registry import MeterRecord, add_meter
from amiflow.db.writer import BatchWriter
from amiflow.errors import PolicyBlocked
from amiflow.types import ReadingBatch
from billing_bridge import (
    MqttRelayDriver,
    issue_command,
    plan_disconnects,
    run_commands,
    schedule_reconnects,
)
from billing_bridge.payments import BalanceIn, PaymentIn, record_balance, record_payment
from billing_bridge.policy import load_ruleset
from billing_bridge.prepaid import enroll, prepaid_positions, update_prepaid
from billing_bridge.reminders import send_reminders

US = load_ruleset("us_tx")
# Thursday 2026-02-26 10:00 in Chicago: a working day, no holiday tomorrow, inside the allowed hours.
ALLOWED_DAY = datetime(2026, 2, 26, 16, 0, tzinfo=UTC)
MILD = (4.0, 15.0)


class FakeMeter:
    """An MQTT meter: answers ``cmd`` on ``cmd/result`` and keeps a relay. ``mode``: normal | armed (reconnect only
    arms the relay, the customer presses the button) | stuck (answers ok but the relay never moves)."""

    def __init__(self, url: str, prefix: str, name: str, mode: str = "normal") -> None:
        self.name, self.prefix, self.mode = name, prefix, mode
        self.relay = "connected"
        self.received: list[dict[str, Any]] = []
        parts = urlsplit(url)
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fake-{prefix}-{name}")
        self._client.on_message = self._on_message
        ready = threading.Event()
        self._client.on_subscribe = lambda *a: ready.set()
        self._client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        self._client.loop_start()
        self._client.subscribe(f"{prefix}/{name}/cmd", qos=1)
        assert ready.wait(10), "no SUBACK from the broker"

    def load_w(self) -> float:
        return 0.0 if self.relay != "connected" else 1500.0

    def press_button(self) -> None:
        if self.relay == "armed":
            self.relay = "connected"

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        body = json.loads(msg.payload)
        self.received.append(body)
        action = body["action"]
        if self.mode != "stuck":
            if action == "disconnect":
                self.relay = "disconnected"
            elif action == "reconnect":
                self.relay = "armed" if self.mode == "armed" else "connected"
        answer = {"id": body["id"], "status": "ok", "relay": self.relay}
        client.publish(f"{self.prefix}/{self.name}/cmd/result", json.dumps(answer), qos=1)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def fake_meter(mqtt_url: str, topic_prefix: str, request: pytest.FixtureRequest) -> Any:
    meters: list[FakeMeter] = []

    def make(name: str, mode: str = "normal") -> FakeMeter:
        meters.append(FakeMeter(mqtt_url, topic_prefix, name, mode))
        return meters[-1]

    yield make
    for m in meters:
        m.close()


def _in_arrears(conn: psycopg.Connection[Any], account: str, meter: str, amount: str = "250.00") -> None:
    add_meter(conn, MeterRecord(name=meter, protocol="mqtt", account=account, feeder="F1", timezone="America/Chicago"))
    record_balance(
        conn,
        BalanceIn(
            account=account,
            balance=amount,
            currency="USD",
            as_of=datetime(2026, 1, 10, tzinfo=UTC),
            due_date=date(2026, 2, 1),
        ),
        "api",
    )


def _walk_ladder(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    sent = []
    for day in range(2, 27):
        now = datetime(2026, 2, day, 15, tzinfo=UTC)
        sent += [(n.type, now.date().isoformat()) for n in send_reminders(conn, US, now=now)]
        assert send_reminders(conn, US, now=now) == []  # a re-run the same day sends nothing
    return sent


def _outbox(conn: psycopg.Connection[Any], type_: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT payload FROM amiflow.outbox WHERE kind = 'notice' AND payload->>'type' = %s ORDER BY id", (type_,)
    ).fetchall()
    return [r[0] for r in rows]


def test_ladder_is_sent_once_per_rung_in_order(db_conn: psycopg.Connection[Any]) -> None:
    _in_arrears(db_conn, "A1", "M1")
    sent = _walk_ladder(db_conn)
    assert sent == [
        ("payment_reminder", "2026-02-04"),
        ("disconnect_warning", "2026-02-11"),
        ("disconnect_scheduled", "2026-02-15"),
    ]
    (scheduled,) = _outbox(db_conn, "disconnect_scheduled")
    assert scheduled["disconnect_not_before"] == "2026-02-25" and scheduled["overdue_amount"] == "250.00"
    n = db_conn.execute("SELECT count(*) FROM amiflow.outbox WHERE kind = 'notice'").fetchone()
    assert n == (3,)


def test_protected_account_gets_reminders_only_and_a_blocked_notice(db_conn: psycopg.Connection[Any]) -> None:
    _in_arrears(db_conn, "A2", "M2")
    db_conn.execute("INSERT INTO amiflow.account_policy (account, protected) VALUES ('A2', '{life_support}')")
    assert [t for t, _ in _walk_ladder(db_conn)] == ["payment_reminder"]
    # Even with a complete ladder (say, notices sent before the flag was set), the policy blocks it.
    for t, day in (("disconnect_warning", 11), ("disconnect_scheduled", 15)):
        db_conn.execute(
            "INSERT INTO amiflow.notices (account, debt_ref, type, sent_at, outbox_key)"
            " VALUES ('A2', 'stmt:A2:2026-02-01', %s, %s, 'k' || %s)",
            (t, datetime(2026, 2, day, 15, tzinfo=UTC), t),
        )
    (item,) = plan_disconnects(db_conn, US, now=ALLOWED_DAY, forecast_c=MILD, issue=True)
    assert not item.decision.allowed and item.decision.blocking == ("protected_customer",)
    assert item.command_id is None
    (blocked,) = _outbox(db_conn, "disconnect_blocked")
    assert blocked["rule"] == "protected_customer" and blocked["ruleset"] == {"id": "us_tx", "version": "2026.1"}
    plan_disconnects(db_conn, US, now=ALLOWED_DAY + timedelta(minutes=5), forecast_c=MILD, issue=True)
    assert len(_outbox(db_conn, "disconnect_blocked")) == 1  # once per debt and set of blocking rules


def test_disconnect_needs_an_allowing_decision(db_conn: psycopg.Connection[Any]) -> None:
    _in_arrears(db_conn, "A3", "M3")
    with pytest.raises(PolicyBlocked):
        issue_command(db_conn, "M3", "disconnect", account="A3", now=ALLOWED_DAY)
    _walk_ladder(db_conn)
    (blocked,) = plan_disconnects(db_conn, US, now=ALLOWED_DAY, forecast_c=None, issue=True)
    assert blocked.decision.blocking == ("weather_unknown",)
    with pytest.raises(PolicyBlocked):
        issue_command(db_conn, "M3", "disconnect", account="A3", now=ALLOWED_DAY, decision_id=blocked.decision_id)
    with pytest.raises(psycopg.errors.CheckViolation):  # the database refuses it too
        db_conn.execute(
            "INSERT INTO amiflow.meter_commands (id, meter, account, action, decision_id, created_at)"
            " VALUES (gen_random_uuid(), 'M3', 'A3', 'disconnect', %s, now())",
            (blocked.decision_id,),
        )
    rows = db_conn.execute(
        "SELECT ruleset_id, ruleset_version, allowed, deciding_rules FROM amiflow.disconnect_decisions"
    ).fetchall()
    assert rows == [("us_tx", "2026.1", False, ["weather_unknown"])]


async def test_disconnect_pay_reconnect_over_mqtt(
    db_conn: psycopg.Connection[Any], mqtt_url: str, topic_prefix: str, fake_meter: Any
) -> None:
    meter = fake_meter("M4")
    _in_arrears(db_conn, "A4", "M4")
    _walk_ladder(db_conn)
    early = plan_disconnects(db_conn, US, now=datetime(2026, 2, 24, 16, tzinfo=UTC), forecast_c=MILD, issue=True)
    assert early[0].decision.blocking == ("notice_period",)  # scheduled 02-15 + 10 days
    (item,) = plan_disconnects(db_conn, US, now=ALLOWED_DAY, forecast_c=MILD, issue=True)
    assert item.decision.allowed and item.command_id is not None
    assert plan_disconnects(db_conn, US, now=ALLOWED_DAY, forecast_c=MILD, issue=True) == []  # already handled

    async with MqttRelayDriver(mqtt_url, prefix=topic_prefix, timeout_s=5) as driver:
        (done,) = await run_commands(db_conn, {"mqtt": driver}, retry_delay_s=0.05)
        assert (done.action, done.state, done.relay) == ("disconnect", "confirmed", "disconnected")
        assert meter.relay == "disconnected" and meter.load_w() == 0.0
        (notice,) = _outbox(db_conn, "disconnected")
        assert notice["meter"] == "M4" and notice["command_id"] == str(done.id)

        # Not paid yet: nothing to reconnect. Then the customer pays the whole balance.
        assert schedule_reconnects(db_conn, US, now=ALLOWED_DAY, within_s=3600) == []
        paid = PaymentIn(
            payment_id="P-1", account="A4", amount="250.00", currency="USD", paid_at=ALLOWED_DAY + timedelta(hours=2)
        )
        record_payment(db_conn, paid, "api")
        (rid,) = schedule_reconnects(db_conn, US, now=ALLOWED_DAY + timedelta(hours=2), within_s=3600)
        assert schedule_reconnects(db_conn, US, now=ALLOWED_DAY + timedelta(hours=2), within_s=3600) == []
        due = db_conn.execute("SELECT due_by - created_at FROM amiflow.meter_commands WHERE id = %s", (rid,))
        assert due.fetchone() == (timedelta(hours=1),)
        (back,) = await run_commands(db_conn, {"mqtt": driver}, retry_delay_s=0.05)
    assert (back.action, back.state, back.relay) == ("reconnect", "confirmed", "connected")
    assert meter.relay == "connected" and meter.load_w() > 0
    (notice,) = _outbox(db_conn, "reconnected")
    assert notice["customer_action_required"] is False
    actions = [m["action"] for m in meter.received]
    assert actions.count("disconnect") == 1 and actions.count("reconnect") == 1


async def test_armed_reconnect_waits_for_the_customer(
    db_conn: psycopg.Connection[Any], mqtt_url: str, topic_prefix: str, fake_meter: Any
) -> None:
    meter = fake_meter("M5", mode="armed")
    meter.relay = "disconnected"
    add_meter(db_conn, MeterRecord(name="M5", protocol="mqtt", account="A5"))
    issue_command(db_conn, "M5", "reconnect", account="A5", now=ALLOWED_DAY)
    async with MqttRelayDriver(mqtt_url, prefix=topic_prefix, timeout_s=5) as driver:
        (out,) = await run_commands(db_conn, {"mqtt": driver}, retry_delay_s=0.05)
    assert (out.state, out.relay) == ("confirmed", "armed")
    assert meter.load_w() == 0.0
    meter.press_button()
    assert meter.load_w() > 0
    (notice,) = _outbox(db_conn, "reconnected")
    assert notice["customer_action_required"] is True


async def test_unconfirmed_command_is_retried_then_escalated(
    db_conn: psycopg.Connection[Any], mqtt_url: str, topic_prefix: str, fake_meter: Any
) -> None:
    meter = fake_meter("M6", mode="stuck")
    _in_arrears(db_conn, "A6", "M6")
    _walk_ladder(db_conn)
    (item,) = plan_disconnects(db_conn, US, now=ALLOWED_DAY, forecast_c=MILD, issue=True)
    assert item.decision.allowed
    async with MqttRelayDriver(mqtt_url, prefix=topic_prefix, timeout_s=5) as driver:
        (out,) = await run_commands(db_conn, {"mqtt": driver}, attempts=2, retry_delay_s=0.05)
    assert (out.state, out.attempts) == ("escalated", 2)
    assert "relay reads 'connected'" in (out.error or "")
    assert [m["action"] for m in meter.received].count("disconnect") == 2
    (alert,) = _outbox(db_conn, "command_escalated")
    assert alert["meter"] == "M6"
    assert _outbox(db_conn, "disconnected") == []


async def test_silent_meter_times_out_and_escalates(
    db_conn: psycopg.Connection[Any], mqtt_url: str, topic_prefix: str
) -> None:
    add_meter(db_conn, MeterRecord(name="M7", protocol="mqtt", account="A7"))
    issue_command(db_conn, "M7", "reconnect", account="A7", now=ALLOWED_DAY)
    async with MqttRelayDriver(mqtt_url, prefix=topic_prefix, timeout_s=0.3) as driver:
        (out,) = await run_commands(db_conn, {"mqtt": driver}, attempts=2, retry_delay_s=0.01)
    assert out.state == "escalated" and "no answer" in (out.error or "")


def test_prepaid_balance_low_notices_and_disconnect_at_zero(db_conn: psycopg.Connection[Any]) -> None:
    start = datetime(2026, 2, 23, 0, tzinfo=UTC)
    add_meter(db_conn, MeterRecord(name="P1", protocol="mqtt", account="PRE1", feeder="F2"))
    enroll(db_conn, "PRE1", currency="USD", rate_per_kwh=Decimal("0.25"), opening_credit=Decimal("12"), start=start)
    # 1 kWh per quarter hour for 12 hours = 48 kWh = 12.00 USD: the credit runs out at 12:00.
    ts = int(start.timestamp()) + 900 * np.arange(1, 49)
    BatchWriter(db_conn).write(ReadingBatch.from_columns("P1", "1-0:1.29.0", ts, np.full(48, 1000.0), unit="Wh"))
    (u,) = update_prepaid(db_conn, US, now=start + timedelta(hours=6))
    assert u.intervals_charged == 24 and u.balance == Decimal("6.0000") and u.notices == ("10.00",)
    (u,) = update_prepaid(db_conn, US, now=start + timedelta(hours=6))
    assert u.intervals_charged == 0 and u.notices == ()  # idempotent
    (u,) = update_prepaid(db_conn, US, now=start + timedelta(hours=13))
    assert u.balance == Decimal("0.0000") and u.notices == ("5.00",)
    (pos,) = prepaid_positions(db_conn)
    assert pos.zero_since == start + timedelta(hours=12)
    # The same day at 10:00 local it has been at zero for 4 h (< 24 h); two days later the notice period is over.
    blocked = plan_disconnects(db_conn, US, now=datetime(2026, 2, 23, 16, tzinfo=UTC), forecast_c=MILD)
    assert blocked[0].decision.blocking == ("notice_period",)
    (ok,) = plan_disconnects(db_conn, US, now=datetime(2026, 2, 25, 16, tzinfo=UTC), forecast_c=MILD, issue=True)
    assert ok.decision.allowed and ok.case.prepaid and ok.command_id is not None
    db_conn.execute("UPDATE amiflow.meter_commands SET state = 'confirmed'")
    # A top-up: positive again, a reconnect is scheduled and a new notice cycle starts.
    record_payment(
        db_conn, PaymentIn(payment_id="T1", account="PRE1", amount="20.00", currency="USD", paid_at=start), "api"
    )
    assert len(schedule_reconnects(db_conn, US, now=datetime(2026, 2, 25, 17, tzinfo=UTC), within_s=3600)) == 1
    (u,) = update_prepaid(db_conn, US, now=start + timedelta(hours=13))
    assert u.balance == Decimal("20.0000")
    (pos,) = prepaid_positions(db_conn)
    assert pos.zero_since is None and pos.cycle_started_at == start + timedelta(hours=13)


def test_one_open_command_per_meter(db_conn: psycopg.Connection[Any]) -> None:
    add_meter(db_conn, MeterRecord(name="M8", protocol="mqtt", account="A8"))
    issue_command(db_conn, "M8", "reconnect", account="A8", now=ALLOWED_DAY)
    with pytest.raises(psycopg.errors.UniqueViolation):
        issue_command(db_conn, "M8", "reconnect", account="A8", now=ALLOWED_DAY)


def test_cli_plan_run_and_report(
    db_url: str, db_conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from amiflow_app.cli import main

    _in_arrears(db_conn, "A9", "M9")
    _walk_ladder(db_conn)
    monkeypatch.setenv("AMIFLOW_DATABASE_URL", db_url)
    monkeypatch.delenv("AMIFLOW_MQTT_URL", raising=False)
    now = ["--now", ALLOWED_DAY.isoformat(), "--json"]
    assert main(["disconnect", "plan", *now]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [(d["account"], d["allowed"], d["rules"]) for d in plan["decisions"]] == [("A9", False, ["weather_unknown"])]
    assert main(["disconnect", "run", *now, "--forecast-min", "2", "--forecast-max", "9"]) == 0
    run = json.loads(capsys.readouterr().out)
    assert run["decisions"][0]["allowed"] and run["decisions"][0]["command"]
    assert run["commands"][0]["state"] == "pending"  # no broker configured: left for a run that has one
    assert main(["arrears", "report", *now]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["account"] == "A9" and row["features"]["days_past_due"] == 25 and row["overdue"] == "250.00"
    assert main(["disconnect", "plan", "--now", "2026-02-26T10:00:00", "--json"]) == 2  # naive time refused


def test_feeder_rate_limit_holds_within_one_run(db_conn: psycopg.Connection[Any]) -> None:
    for i in range(12):
        _in_arrears(db_conn, f"R{i:02}", f"RM{i:02}")  # all on feeder F1 (us_tx: at most 10 per feeder per hour)
    _walk_ladder(db_conn)
    items = plan_disconnects(db_conn, US, now=ALLOWED_DAY, forecast_c=MILD, issue=True)
    assert sum(i.decision.allowed for i in items) == 10
    assert [i.decision.blocking for i in items if not i.decision.allowed] == [("rate_limit_feeder",)] * 2
    # An hour later the window has moved: the two left are allowed.
    later = plan_disconnects(db_conn, US, now=ALLOWED_DAY + timedelta(hours=1, minutes=1), forecast_c=MILD, issue=True)
    assert [i.decision.allowed for i in later] == [True, True]
