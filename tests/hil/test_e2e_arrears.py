"""End to end: an account falls into arrears, gets its reminders, is disconnected on an allowed day (the meter's relay
opens and its load drops to zero), pays through the billing API, and is reconnected.

MQTT: a meter on the real broker that publishes its load as contract readings and obeys ``cmd`` (the fleet simulator
when it is installed, else a small device in this file), readings stored through the real writer. DLMS: the
``amiflow sim dlms`` simulator as a separate process, driven through ``protocols.dlms.DlmsClient``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from amiflow.db.registry import MeterRecord, add_meter
from amiflow.db.writer import BatchWriter
from amiflow.settings import load_settings
from amiflow.types import ReadingBatch
from billing_bridge import (
    DlmsRelayDriver,
    MqttRelayDriver,
    plan_disconnects,
    run_commands,
    schedule_reconnects,
)
from billing_bridge.payments import BalanceIn, record_balance
from billing_bridge.policy import load_ruleset
from billing_bridge.reminders import send_reminders

US = load_ruleset("us_tx")
ALLOWED_DAY = datetime(2026, 2, 26, 16, 0, tzinfo=UTC)  # Thursday 10:00 in Chicago
MILD = (4.0, 15.0)


class LoadMeter:
    """An MQTT meter publishing 1-0:1.7.0 (W) every tick; relay per ``cmd``; zero load when open."""

    def __init__(self, url: str, prefix: str, name: str) -> None:
        self.name, self.prefix, self.relay = name, prefix, "connected"
        parts = urlsplit(url)
        self._c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"load-{prefix}-{name}")
        self._c.on_message = self._on_cmd
        ready = threading.Event()
        self._c.on_subscribe = lambda *a: ready.set()
        self._c.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        self._c.loop_start()
        self._c.subscribe(f"{prefix}/{name}/cmd", qos=1)
        assert ready.wait(10)

    def _on_cmd(self, client: Any, userdata: Any, msg: Any) -> None:
        body = json.loads(msg.payload)
        if body["action"] == "disconnect":
            self.relay = "disconnected"
        elif body["action"] == "reconnect":
            self.relay = "connected"
        answer = {"id": body["id"], "status": "ok", "relay": self.relay}
        client.publish(f"{self.prefix}/{self.name}/cmd/result", json.dumps(answer), qos=1)

    def publish_reading(self, ts: datetime) -> None:
        watts = 1800.0 if self.relay == "connected" else 0.0
        payload = {
            "meter": self.name,
            "seq": int(ts.timestamp()),
            "readings": [{"obis": "1-0:1.7.0", "ts": ts.isoformat(), "value": watts / 1000, "unit": "kW"}],
        }
        self._c.publish(f"{self.prefix}/{self.name}/readings", json.dumps(payload), qos=1).wait_for_publish(5)

    def close(self) -> None:
        self._c.disconnect()
        self._c.loop_stop()


class Recorder:
    """A minimal head-end for the test: stores contract readings from the broker with the real BatchWriter."""

    def __init__(self, url: str, prefix: str, db_url: str) -> None:
        self._conn = psycopg.connect(db_url, autocommit=True)
        self._lock = threading.Lock()
        parts = urlsplit(url)
        self._c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"rec-{prefix}")
        self._c.on_message = self._on_message
        self.stored = 0
        ready = threading.Event()
        self._c.on_subscribe = lambda *a: ready.set()
        self._c.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        self._c.loop_start()
        self._c.subscribe(f"{prefix}/+/readings", qos=1)
        assert ready.wait(10)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        body = json.loads(msg.payload)
        r = body["readings"]
        ts = [int(datetime.fromisoformat(x["ts"]).timestamp()) for x in r]
        batch = ReadingBatch.from_columns(
            body["meter"], [x["obis"] for x in r], ts, np.array([x["value"] * 1000 for x in r]), unit="W"
        )
        with self._lock:
            BatchWriter(self._conn).write(batch)
            self.stored += len(r)

    def wait_for(self, n: int) -> None:
        deadline = time.monotonic() + 10
        while self.stored < n and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.stored >= n, f"only {self.stored} of {n} readings stored"

    def close(self) -> None:
        self._c.disconnect()
        self._c.loop_stop()
        self._conn.close()


def _load_w(conn: psycopg.Connection[Any], meter: str, ts: datetime) -> float:
    row = conn.execute(
        "SELECT value FROM amiflow.v_readings WHERE meter = %s AND obis = '1-0:1.7.0' AND ts = %s", (meter, ts)
    ).fetchone()
    assert row is not None, f"no reading of {meter} at {ts}"
    return float(row[0])


def _arrears_and_ladder(conn: psycopg.Connection[Any], account: str) -> list[str]:
    record_balance(
        conn,
        BalanceIn(
            account=account,
            balance="320.00",
            currency="USD",
            as_of=datetime(2026, 1, 10, tzinfo=UTC),
            due_date=date(2026, 2, 1),
        ),
        "api",
    )
    sent = []
    for day in range(2, 27):
        sent += [n.type for n in send_reminders(conn, US, now=datetime(2026, 2, day, 15, tzinfo=UTC))]
    return sent


def _pay_through_api(db_url: str, account: str, amount: str) -> None:
    from fastapi.testclient import TestClient

    from amiflow.db import Database
    from billing_bridge.api import create_app

    settings = load_settings(database_url=db_url, api_token="t0ken")
    with Database(db_url) as db, TestClient(create_app(settings, db)) as client:
        body = {
            "payment_id": f"PAY-{account}",
            "account": account,
            "amount": amount,
            "currency": "USD",
            "paid_at": (ALLOWED_DAY + timedelta(hours=1)).isoformat(),
        }
        r = client.post("/billing/v1/payments", json=body, headers={"Authorization": "Bearer t0ken"})
        assert r.status_code in (200, 201), r.text


async def test_e2e_mqtt_arrears_disconnect_pay_reconnect(
    db_url: str, db_conn: psycopg.Connection[Any], mqtt_url: str, topic_prefix: str
) -> None:
    add_meter(db_conn, MeterRecord(name="E1", protocol="mqtt", account="ACC-E1", feeder="F1"))
    meter = LoadMeter(mqtt_url, topic_prefix, "E1")
    rec = Recorder(mqtt_url, topic_prefix, db_url)
    try:
        t0 = ALLOWED_DAY - timedelta(minutes=15)
        meter.publish_reading(t0)
        rec.wait_for(1)
        assert _load_w(db_conn, "E1", t0) == pytest.approx(1800)

        assert _arrears_and_ladder(db_conn, "ACC-E1") == [
            "payment_reminder",
            "disconnect_warning",
            "disconnect_scheduled",
        ]
        saturday = plan_disconnects(db_conn, US, now=datetime(2026, 2, 28, 16, tzinfo=UTC), forecast_c=MILD)
        assert saturday[0].decision.blocking == ("weekend",)
        (item,) = plan_disconnects(db_conn, US, now=ALLOWED_DAY, forecast_c=MILD, issue=True)
        assert item.decision.allowed
        async with MqttRelayDriver(mqtt_url, prefix=topic_prefix, timeout_s=5) as driver:
            (off,) = await run_commands(db_conn, {"mqtt": driver}, retry_delay_s=0.05)
            assert (off.state, off.relay) == ("confirmed", "disconnected")
            meter.publish_reading(ALLOWED_DAY)
            rec.wait_for(2)
            assert _load_w(db_conn, "E1", ALLOWED_DAY) == 0.0  # the relay is open: no load

            await asyncio.to_thread(_pay_through_api, db_url, "ACC-E1", "320.00")
            (rid,) = schedule_reconnects(db_conn, US, now=ALLOWED_DAY + timedelta(hours=1), within_s=3600)
            (on,) = await run_commands(db_conn, {"mqtt": driver}, retry_delay_s=0.05)
        assert (on.id, on.state, on.relay) == (rid, "confirmed", "connected")
        t2 = ALLOWED_DAY + timedelta(hours=1, minutes=15)
        meter.publish_reading(t2)
        rec.wait_for(3)
        assert _load_w(db_conn, "E1", t2) == pytest.approx(1800)
        types = [
            r[0]
            for r in db_conn.execute(
                "SELECT payload->>'type' FROM amiflow.outbox WHERE kind = 'notice' AND account = 'ACC-E1' ORDER BY id"
            ).fetchall()
        ]
        # The Saturday evaluation told billing why the scheduled disconnect waited (weekend rule).
        assert types == [
            "payment_reminder",
            "disconnect_warning",
            "disconnect_scheduled",
            "disconnect_blocked",
            "disconnected",
            "reconnected",
        ]
    finally:
        meter.close()
        rec.close()


def _start_dlms_sim() -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "amiflow_app",
            "sim",
            "dlms",
            "--listen",
            "tcp://127.0.0.1:0",
            "--auth",
            "lls",
            "--password",
            "secret",
            "--meter",
            "D1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        m = re.search(r"127\.0\.0\.1:(\d+)|port\D*(\d+)", line)
        if m:
            return proc, int(m.group(1) or m.group(2))
        if not line and proc.poll() is not None:
            break
    proc.kill()
    pytest.fail("the DLMS simulator did not print its port")


async def test_e2e_dlms_arrears_disconnect_pay_reconnect(db_url: str, db_conn: psycopg.Connection[Any]) -> None:
    dlms = pytest.importorskip("protocols.dlms", reason="protocols.dlms (DlmsClient) has not landed yet")
    pytest.importorskip("simulators.dlms", reason="simulators.dlms (amiflow sim dlms) has not landed yet")
    proc, port = _start_dlms_sim()
    try:
        uri = f"dlms+tcp://127.0.0.1:{port}?client=1&server=1"
        add_meter(db_conn, MeterRecord(name="D1", protocol="dlms", uri=uri, account="ACC-D1", feeder="F2"))
        assert len(_arrears_and_ladder(db_conn, "ACC-D1")) == 3
        (item,) = plan_disconnects(db_conn, US, now=ALLOWED_DAY, forecast_c=MILD, issue=True)
        assert item.decision.allowed
        driver = DlmsRelayDriver(password=b"secret")
        (off,) = await run_commands(db_conn, {"dlms": driver}, retry_delay_s=0.1)
        assert (off.state, off.relay) == ("confirmed", "disconnected")
        from amiflow.uri import parse_meter_uri

        async with dlms.DlmsClient(parse_meter_uri(uri), password=b"secret") as client:
            power, _unit = await client.read_register("1-0:1.7.0")
            assert power == 0  # a disconnected meter's load is zero
        await asyncio.to_thread(_pay_through_api, db_url, "ACC-D1", "320.00")
        schedule_reconnects(db_conn, US, now=ALLOWED_DAY + timedelta(hours=1), within_s=3600)
        (on,) = await run_commands(db_conn, {"dlms": driver}, retry_delay_s=0.1)
        assert on.state == "confirmed" and on.relay in ("connected", "armed")
    finally:
        proc.terminate()
        proc.wait(10)
