"""A real Prometheus (Debian's ``prometheus`` package) scrapes a real ``amiflow serve`` with deploy/prometheus's
configuration and rules and answers through its HTTP API: the ingest rate, queue depth, spool bytes, outbox pending
and failed polls; the metrics key of the metrics role is what lets the scrape in. The rules pass ``promtool``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml  # type: ignore[import-untyped]

from amiflow.db.outbox import enqueue
from amiflow.db.registry import MeterRecord, add_meter
from billing_bridge.api_keys import create_key
from ingest.testing import publish, readings_payload
from tests.security.conftest import free_port

pytestmark = pytest.mark.timeout(240)

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
T0 = 1_793_491_200  # 2026-11-01T00:00:00Z


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed: `make test` installs Debian's prometheus package (apt-get)")
    return path


def test_the_rules_pass_promtool() -> None:
    promtool = _tool("promtool")
    checked = subprocess.run([promtool, "check", "rules", str(RULES / "amiflow-rules.yml")], capture_output=True)
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
    assert b"SUCCESS" in checked.stdout
    tested = subprocess.run([promtool, "test", "rules", "amiflow-rules.test.yml"], cwd=RULES, capture_output=True)
    assert tested.returncode == 0, tested.stdout.decode() + tested.stderr.decode()  # the alerts fire when they should


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.25)


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def start_serve(
    children: list[subprocess.Popen[bytes]], tmp_path: Path, db_url: str, mqtt_url: str, prefix: str
) -> tuple[str, Path]:
    tag = prefix.rsplit("/", 1)[-1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMIFLOW_")}
    env.update(
        AMIFLOW_DATABASE_URL=db_url, AMIFLOW_MQTT_URL=mqtt_url, AMIFLOW_MQTT_TOPIC_PREFIX=prefix,
        AMIFLOW_MQTT_CLIENT_ID=f"prom-{tag}", AMIFLOW_MQTT_SHARE_GROUP=f"g{tag}", AMIFLOW_HTTP_PORT="0",
        AMIFLOW_DATA_DIR=str(tmp_path / "data"), AMIFLOW_API_METRICS_AUTH="true", AMIFLOW_READING_HORIZON_DAYS="36500",
        AMIFLOW_POLL_INTERVAL_S="2", AMIFLOW_POLL_JITTER_S="0", AMIFLOW_POLL_TIMEOUT_S="0.3", AMIFLOW_POLL_RETRIES="0",
    )  # fmt: skip
    out = tmp_path / "serve.log"
    cmd = [sys.executable, "-m", "amiflow_app", "serve", "--only", "ingest,poller,api"]
    proc = subprocess.Popen(cmd, env=env, stdout=out.open("wb"), stderr=subprocess.STDOUT)
    children.append(proc)

    def url() -> str | None:
        assert proc.poll() is None, out.read_text(errors="replace")
        m = re.search(r"API at (http://\S+)", out.read_text(errors="replace"))
        return m.group(1) if m else None

    return wait_until(url, 60, "amiflow serve listening"), out


def start_prometheus(children: list[subprocess.Popen[bytes]], tmp_path: Path, target: str, key: Path) -> str:
    """Prometheus on deploy/prometheus/prometheus.yml, scraping ``target`` every second with the metrics key, plus
    one job without the key (it must be refused)."""
    config = yaml.safe_load((RULES / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(RULES / name) for name in config["rule_files"]]
    job = config["scrape_configs"][0]
    job["authorization"]["credentials_file"] = str(key)
    job["static_configs"] = [{"targets": [target]}]
    config["scrape_configs"].append({"job_name": "anonymous", "static_configs": [{"targets": [target]}]})
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    cmd = [_tool("prometheus"), f"--config.file={path}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
           f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]  # fmt: skip
    log = tmp_path / "prometheus.log"
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    children.append(proc)
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert proc.poll() is None, log.read_text(errors="replace")
        try:
            return httpx.get(f"{base}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, 60, "prometheus ready")
    return base


def query(base: str, expr: str) -> list[tuple[dict[str, str], float]]:
    answer = httpx.get(f"{base}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", answer
    return [(r["metric"], float(r["value"][1])) for r in answer["data"]["result"]]


def value(base: str, expr: str) -> float | None:
    found = query(base, expr)
    return found[0][1] if found else None


def test_prometheus_scrapes_serve_and_answers_the_operations_questions(
    db_url: str, db_conn: psycopg.Connection[Any], mqtt_url: str, topic_prefix: str, tmp_path: Path,
    children: list[subprocess.Popen[bytes]],
) -> None:  # fmt: skip
    add_meter(db_conn, MeterRecord(name="PM1", protocol="mqtt"))
    add_meter(db_conn, MeterRecord(name="PX1", protocol="modbus", uri=f"modbus+tcp://127.0.0.1:{free_port()}?unit=1"))
    for i in range(3):  # no bridge runs: they stay pending
        enqueue(db_conn, kind="bill", idempotency_key=f"prom-{i}", payload={"bill_id": f"B{i}"}, account="A")
    key = tmp_path / "amiflow-metrics.key"
    key.write_text(create_key(db_conn, "prometheus", "metrics")[1])
    api, serve_log = start_serve(children, tmp_path, db_url, mqtt_url, topic_prefix)
    prom = start_prometheus(children, tmp_path, api.removeprefix("http://"), key)
    wait_until(lambda: value(prom, 'up{job="amiflow"}') == 1.0, 30, "the keyed scrape succeeds")
    publish(mqtt_url, [(f"{topic_prefix}/PM1/readings", readings_payload("PM1", T0 + 86400 * d, 96)) for d in range(3)])
    wait_until(lambda: value(prom, "amiflow_ingest_readings_stored_total") == 288.0, 60, "288 readings scraped")
    rate = wait_until(lambda: value(prom, "rate(amiflow_ingest_readings_stored_total[30s]) > 0"), 20, "ingest rate")
    assert rate is not None and rate > 0
    assert value(prom, "amiflow_ingest_queue_depth") == 0.0
    assert value(prom, "amiflow_ingest_spool_bytes") == 0.0
    assert value(prom, "amiflow_outbox_pending") == 3.0
    assert wait_until(lambda: (value(prom, "amiflow_poller_failed_total") or 0) >= 1, 30, "a failed poll counted")
    rules = httpx.get(f"{prom}/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = {r["name"]: r for g in rules for r in g["rules"]}
    assert {"AmiflowSpoolFull", "AmiflowOutboxBacklog", "AmiflowPollsFailing"} <= set(loaded)
    broken = [r for r in loaded.values() if r["health"] not in ("ok", "unknown")]
    assert not broken, broken  # every rule evaluates on the real series
    assert wait_until(lambda: value(prom, "amiflow:ingest_readings_stored:rate5m"), 20, "recording rule") > 0
    targets = httpx.get(f"{prom}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
    anonymous = next(t for t in targets if t["labels"]["job"] == "anonymous")
    assert anonymous["health"] == "down" and "401" in anonymous["lastError"]  # without the key: refused
    assert "Traceback" not in serve_log.read_text(errors="replace")
