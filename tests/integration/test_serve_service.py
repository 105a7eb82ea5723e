"""The ``Service`` Python API in-process on real PostgreSQL: supervision (crash, backoff, restart, degraded health),
the stop bound, and the collections job reconnecting a meter after a payment posted to the service's own API."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from amiflow.db.registry import MeterRecord, add_meter
from amiflow.errors import ConfigError
from amiflow.settings import Settings, load_settings
from amiflow_app.serve.supervisor import Service
from billing_bridge import MqttRelayDriver, plan_disconnects, run_commands
from billing_bridge.payments import BalanceIn, record_balance
from billing_bridge.policy import load_ruleset
from billing_bridge.reminders import send_reminders

TOKEN = "serve-service-token"


@pytest.fixture
def settings(db_url: str, mqtt_url: str, topic_prefix: str, tmp_path: Path) -> Settings:
    return load_settings(
        database_url=db_url,
        mqtt_url=mqtt_url,
        mqtt_topic_prefix=topic_prefix,
        http_port=0,
        api_token=TOKEN,
        data_dir=tmp_path,
    )


def wait_until(check: Callable[[], Any], timeout: float = 20.0, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(every)
    return value


class Flaky:
    """A component that crashes on its first ``crashes`` runs, then runs until stopped."""

    name = "flaky"

    def __init__(self, crashes: int) -> None:
        self.crashes = crashes
        self.runs = 0
        self.started_at: list[float] = []

    async def run(self, stop: asyncio.Event) -> None:
        self.runs += 1
        self.started_at.append(time.monotonic())
        if self.runs <= self.crashes:
            raise OSError(f"flaky failure {self.runs}")
        await stop.wait()

    def problem(self) -> str | None:
        return None

    def prometheus(self) -> str:
        return f"flaky_runs_total {self.runs}\n"


def test_crashing_component_restarts_with_backoff_while_others_serve(settings: Settings) -> None:
    flaky = Flaky(crashes=2)
    service = Service(settings, [flaky, "api"], restart_backoff_s=0.5, stop_timeout_s=5)
    with service:
        # the API keeps answering while the component is down, and says so
        h = wait_until(lambda: (r := httpx.get(service.url + "/health").json())["status"] == "degraded" and r)
        assert h["components"]["flaky"].startswith("degraded: crashed (OSError: flaky failure")
        assert h["components"]["api"] == "ok"
        wait_until(lambda: httpx.get(service.url + "/health").json()["status"] == "ok", timeout=10)
        assert flaky.runs == 3
        gaps = [b - a for a, b in zip(flaky.started_at, flaky.started_at[1:], strict=False)]
        assert gaps[0] >= 0.45 and gaps[1] >= 0.95  # 0.5 s, then doubled
        text = httpx.get(service.url + "/metrics").text
        assert 'amiflow_component_restarts_total{component="flaky"} 2' in text
        assert "flaky_runs_total 3" in text
    assert service.health() == {"flaky": "stopped", "api": "stopped"}


class ReturnsEarly(Flaky):
    name = "early"

    async def run(self, stop: asyncio.Event) -> None:
        self.runs += 1
        if self.runs > 1:
            await stop.wait()


def test_a_component_that_returns_by_itself_counts_as_a_crash(settings: Settings) -> None:
    comp = ReturnsEarly(0)
    with Service(settings, [comp], restart_backoff_s=0.1) as service:
        wait_until(lambda: service.states["early"].restarts == 1 and service.health() == {"early": "ok"})
        assert "returned while the service runs" in (service.states["early"].last_error or "")


class Stubborn(Flaky):
    """Ignores the stop: a stuck poll or a hung request."""

    name = "stubborn"

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.sleep(3600)


def test_stop_is_bounded_and_reports_unclean(settings: Settings) -> None:
    service = Service(settings, [Stubborn(0), "api"], stop_timeout_s=1.0)
    service.start()
    url = service.url
    t0 = time.monotonic()
    assert service.stop() is False
    assert time.monotonic() - t0 < 6
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/health", timeout=2)


def test_unknown_component_and_port_in_use_fail_before_anything_runs(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="unknown component 'pollr'"):
        Service(settings, ["pollr"])
    first = Service(settings, ["api"])
    with first:
        port = urlsplit(first.url).port
        second = Service(settings.model_copy(update={"http_port": port}), ["api"])
        with pytest.raises(ConfigError, match="cannot listen"):
            second.start()
        assert httpx.get(first.url + "/health").json()["status"] == "ok"


# -- collections: a payment clears the arrears, the service reconnects the meter --------------------------------------


class FakeMeter:
    """An MQTT meter that obeys ``cmd`` (CONTRACT.md) and keeps a relay."""

    def __init__(self, url: str, prefix: str, name: str) -> None:
        self.relay = "connected"
        self.actions: list[str] = []
        self._topic = f"{prefix}/{name}"
        parts = urlsplit(url)
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fake-{prefix}-{name}")
        self._client.on_message = self._on_message
        ready = threading.Event()
        self._client.on_subscribe = lambda *a: ready.set()
        self._client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        self._client.loop_start()
        self._client.subscribe(f"{self._topic}/cmd", qos=1)
        assert ready.wait(10), "no SUBACK from the broker"

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        body = json.loads(msg.payload)
        self.actions.append(body["action"])
        self.relay = {"disconnect": "disconnected", "reconnect": "connected"}.get(body["action"], self.relay)
        answer = {"id": body["id"], "status": "ok", "relay": self.relay}
        client.publish(f"{self._topic}/cmd/result", json.dumps(answer), qos=1)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def _disconnect_for_arrears(conn: psycopg.Connection[Any], mqtt_url: str, prefix: str) -> None:
    """Account A1 (meter M1) owes 250.00 since 2026-02-01 and was disconnected on 2026-02-26 under us_tx."""
    rs = load_ruleset("us_tx")
    add_meter(conn, MeterRecord(name="M1", protocol="mqtt", account="A1", feeder="F1", timezone="America/Chicago"))
    statement = BalanceIn(
        account="A1",
        balance="250.00",
        currency="USD",
        as_of=datetime(2026, 1, 10, tzinfo=UTC),
        due_date=date(2026, 2, 1),
    )
    record_balance(conn, statement, "api")
    for day in range(2, 27):
        send_reminders(conn, rs, now=datetime(2026, 2, day, 15, tzinfo=UTC))
    (item,) = plan_disconnects(conn, rs, now=datetime(2026, 2, 26, 16, tzinfo=UTC), forecast_c=(4.0, 15.0), issue=True)
    assert item.decision.allowed

    async def send() -> list[Any]:
        async with MqttRelayDriver(mqtt_url, prefix=prefix, timeout_s=5) as driver:
            return await run_commands(conn, {"mqtt": driver}, retry_delay_s=0.05)

    (done,) = asyncio.run(send())
    assert done.state == "confirmed"


def test_payment_through_the_api_leads_to_a_reconnect(
    settings: Settings, db_conn: psycopg.Connection[Any], mqtt_url: str, topic_prefix: str
) -> None:
    meter = FakeMeter(mqtt_url, topic_prefix, "M1")
    try:
        _disconnect_for_arrears(db_conn, mqtt_url, topic_prefix)
        assert meter.relay == "disconnected"
        service = Service(settings, ["collections", "api"], collections_interval_s=1.0)
        with service:
            time.sleep(1.5)  # a job run or two while still in arrears: no reconnect
            assert meter.relay == "disconnected"
            body = {
                "payment_id": "P-1",
                "account": "A1",
                "amount": "250.00",
                "currency": "USD",
                "paid_at": datetime.now(UTC).isoformat(),
            }
            r = httpx.post(
                service.url + "/billing/v1/payments", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
            )
            assert r.status_code == 201, r.text
            wait_until(lambda: meter.relay == "connected", timeout=20)

            def confirmed() -> bool:
                row = db_conn.execute(
                    "SELECT state FROM amiflow.meter_commands WHERE meter = 'M1' AND action = 'reconnect'"
                ).fetchone()
                return row == ("confirmed",)

            wait_until(confirmed)
            text = httpx.get(service.url + "/metrics").text
            assert "amiflow_collections_reconnects_scheduled_total 1" in text
            assert "amiflow_collections_commands_confirmed_total 1" in text
        assert [a for a in meter.actions if a != "read"] == ["disconnect", "reconnect"]
    finally:
        meter.close()
