"""``amiflow serve`` as a subprocess on real PostgreSQL and a real broker: health, metrics, OpenAPI, data through
ingest and the bridge, SIGTERM, crash and restart of a component, ``--only api``."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from amiflow.db.outbox import enqueue
from amiflow.db.registry import MeterRecord, add_meter
from billing_bridge.receiver import Receiver, ReceiverConfig
from ingest.testing import publish, readings_payload

STOP_TIMEOUT_S = 10.0
SECRET = "serve-test-secret"
TOKEN = "serve-test-token"


class Serve:
    """A running ``amiflow serve`` child: its API URL, its output file, and how it ended."""

    def __init__(self, proc: subprocess.Popen[bytes], out: Path, url: str | None) -> None:
        self.proc = proc
        self.out = out
        self.url = url

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def get(self, path: str) -> httpx.Response:
        assert self.url is not None
        return httpx.get(self.url + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)

    def terminate(self) -> tuple[int, float]:
        """SIGTERM; (exit code, seconds until it exited)."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(STOP_TIMEOUT_S + 20)
        return code, time.monotonic() - t0


def wait_until(check: Callable[[], Any], timeout: float = 30.0, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(every)


@pytest.fixture
def serve(tmp_path: Path, db_url: str, mqtt_url: str, topic_prefix: str) -> Iterator[Callable[..., Serve]]:
    children: list[subprocess.Popen[bytes]] = []

    def start(*args: str, env: dict[str, str] | None = None, expect_url: bool = True) -> Serve:
        base = {k: v for k, v in os.environ.items() if not k.startswith("AMIFLOW_")}
        base.update(
            AMIFLOW_DATABASE_URL=db_url,
            AMIFLOW_MQTT_URL=mqtt_url,
            AMIFLOW_MQTT_TOPIC_PREFIX=topic_prefix,
            AMIFLOW_MQTT_CLIENT_ID=f"serve-{topic_prefix.rsplit('/', 1)[-1]}",
            AMIFLOW_HTTP_PORT="0",
            AMIFLOW_DATA_DIR=str(tmp_path / "data"),
            AMIFLOW_API_TOKEN=TOKEN,
        )
        base.update(env or {})
        out = tmp_path / f"serve-{len(children)}.log"
        cmd = [sys.executable, "-m", "amiflow_app", "-v", "serve", "--stop-timeout", str(STOP_TIMEOUT_S), *args]
        proc = subprocess.Popen(cmd, env=base, stdout=out.open("wb"), stderr=subprocess.STDOUT)
        children.append(proc)
        if not expect_url:
            return Serve(proc, out, None)

        def api_url() -> str | None:
            if proc.poll() is not None:
                raise AssertionError(f"serve exited {proc.returncode}:\n{out.read_text(errors='replace')}")
            m = re.search(r"API at (http://\S+)", out.read_text(errors="replace"))
            return m.group(1) if m else None

        return Serve(proc, out, wait_until(api_url, timeout=60))

    yield start
    for proc in children:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))


def test_all_components_ingest_deliver_and_stop_cleanly(
    serve: Callable[..., Serve], db_conn: psycopg.Connection[Any], mqtt_url: str, topic_prefix: str
) -> None:
    add_meter(db_conn, MeterRecord("SRV1", "mqtt", "mqtt://SRV1"))
    with Receiver(ReceiverConfig(secret=SECRET.encode())) as receiver:
        s = serve(env={"AMIFLOW_BILLING_URL": receiver.url, "AMIFLOW_BILLING_SECRET": SECRET})
        health = wait_until(lambda: (h := s.get("/health").json())["status"] == "ok" and h, timeout=30)
        every = ("ingest", "poller", "bridge", "collections", "storage", "api")
        assert health["components"] == dict.fromkeys(every, "ok")
        assert health["database"] is True

        base = int(time.time()) // 900 * 900 - 4 * 900
        publish(mqtt_url, [(f"{topic_prefix}/SRV1/readings", readings_payload("SRV1", base, 4))])
        enqueue(db_conn, kind="bill", idempotency_key="serve-test-bill-1", payload={"bill_id": "B1"}, account="A1")

        def stored() -> bool:
            row = db_conn.execute("SELECT count(*) FROM amiflow.v_readings WHERE meter = 'SRV1'").fetchone()
            return row is not None and row[0] == 4

        wait_until(stored)
        wait_until(lambda: "serve-test-bill-1" in receiver.snapshot().deliveries)
        text = wait_until(
            lambda: (t := s.get("/metrics").text) and metric(t, "amiflow_bridge_delivered_total") == 1 and t
        )
        assert metric(text, "amiflow_ingest_readings_stored_total") == 4
        assert metric(text, "amiflow_ingest_messages_acked_total") == 1
        assert "amiflow_poller_polls_total" in text
        assert metric(text, "amiflow_collections_runs_total") >= 1
        for c in every:
            assert f'amiflow_component_up{{component="{c}"}} 1' in text
            assert f'amiflow_component_restarts_total{{component="{c}"}} 0' in text

        spec = s.get("/openapi.json").json()
        for path in ("/health", "/metrics", "/meters", "/meters/{meter}/readings", "/bills", "/accounts/{account}"):
            assert path in spec["paths"], path
        assert any(p.startswith("/billing/v1/") for p in spec["paths"]), "inbound billing API not mounted"
        readings = s.get(f"/meters/SRV1/readings?start={base - 900}&end={base + 3 * 900}").json()
        assert len(readings) == 4

        code, took = s.terminate()
    assert code == 0, s.output()
    assert took < STOP_TIMEOUT_S + 5
    assert "amiflow serve: stopped\n" in s.output()


def test_a_crashed_component_is_restarted_and_degraded_meanwhile(
    serve: Callable[..., Serve], db_conn: psycopg.Connection[Any]
) -> None:
    s = serve("--only", "poller,api", "--restart-backoff", "3", env={"AMIFLOW_POLL_INTERVAL_S": "1"})
    wait_until(lambda: s.get("/health").json()["status"] == "ok")
    # The poller loses its database connection: it fails on its next query, the supervisor restarts it.
    killed = db_conn.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE application_name = 'amiflow-serve-poller' AND datname = current_database()"
    ).fetchone()
    assert killed == (1,)
    degraded = wait_until(lambda: (h := s.get("/health")).status_code == 503 and h.json(), every=0.05)
    assert degraded["status"] == "degraded"
    assert degraded["components"]["poller"].startswith("degraded: crashed")
    assert degraded["components"]["api"] == "ok"
    healed = wait_until(lambda: (h := s.get("/health").json())["status"] == "ok" and h, timeout=30)
    assert healed["components"] == {"poller": "ok", "api": "ok"}
    text = s.get("/metrics").text
    assert 'amiflow_component_restarts_total{component="poller"} 1' in text
    assert 'amiflow_component_restarts_total{component="api"} 0' in text
    assert "crashed; restarting" in s.output()
    code, _ = s.terminate()
    assert code == 0, s.output()


def test_only_api_runs_just_the_api(serve: Callable[..., Serve], db_conn: psycopg.Connection[Any]) -> None:
    add_meter(db_conn, MeterRecord("SRV2", "modbus", "modbus+tcp://127.0.0.1:1502?unit=1"))
    s = serve("--only", "api")
    health = s.get("/health").json()
    assert health == {**health, "status": "ok", "components": {"api": "ok"}}
    text = s.get("/metrics").text
    assert "amiflow_ingest_" not in text and "amiflow_poller_" not in text and "amiflow_bridge_" not in text
    assert [m["meter"] for m in s.get("/meters").json()] == ["SRV2"]
    # no ingest worker connected: nothing subscribed under this client id
    assert "connected to MQTT" not in s.output()
    code, took = s.terminate()
    assert code == 0, s.output()
    assert took < STOP_TIMEOUT_S + 5


def test_setup_errors_are_one_line_and_exit_2(serve: Callable[..., Serve], tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        s = serve("--only", "api", env={"AMIFLOW_HTTP_PORT": str(port)}, expect_url=False)
        assert s.proc.wait(60) == 2
    assert f"127.0.0.1:{port}: cannot listen" in s.output()
    assert "Traceback" not in s.output()

    s = serve("--only", "bridge", expect_url=False)  # named explicitly, but no billing URL configured
    assert s.proc.wait(60) == 2
    assert "AMIFLOW_BILLING_URL" in s.output() and "Traceback" not in s.output()

    s = serve("--only", "api,nonsense", expect_url=False)
    assert s.proc.wait(60) == 2
    assert "unknown component 'nonsense'" in s.output()


def test_sigterm_mid_stream_loses_nothing(
    serve: Callable[..., Serve], db_conn: psycopg.Connection[Any], mqtt_url: str, topic_prefix: str
) -> None:
    """A stop drains: what was acknowledged is stored, the rest stays with the broker for the next start."""
    add_meter(db_conn, MeterRecord("SRV3", "mqtt", "mqtt://SRV3"))
    n = 1500
    base = (int(time.time()) // 900 - 4 * n - 8) * 900
    messages = [
        (f"{topic_prefix}/SRV3/readings", readings_payload("SRV3", base + 4 * 900 * k, 4, seq=k)) for k in range(n)
    ]

    def stored() -> int:
        row = db_conn.execute("SELECT count(*) FROM amiflow.v_readings WHERE meter = 'SRV3'").fetchone()
        return int(row[0]) if row else 0

    first = serve("--only", "ingest,api")
    wait_until(lambda: first.get("/health").json()["status"] == "ok")
    publish(mqtt_url, messages)
    code, took = first.terminate()
    assert code == 0, first.output()
    assert took < STOP_TIMEOUT_S + 5
    before = stored()
    assert before % 4 == 0  # whole messages only: a batch commits all its readings or none

    second = serve("--only", "ingest,api")
    wait_until(lambda: stored() == 4 * n, timeout=60)
    text = second.get("/metrics").text
    assert metric(text, "amiflow_ingest_readings_stored_total") == 4 * n - before
    code, _ = second.terminate()
    assert code == 0, second.output()
