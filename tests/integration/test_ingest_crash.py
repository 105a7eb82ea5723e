"""``kill -9`` of an ingest worker process in the middle of a run, then a restart: nothing lost, nothing doubled.

The worker acknowledges a message only after the batch holding it committed, so everything the killed process had
received but not committed is redelivered by the broker to the restarted session (same client id, clean start off).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from amiflow.db.registry import MeterRecord, add_meter
from ingest.testing import publish, readings_payload, wait_for

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def broker_url() -> str:
    url = os.environ.get("AMIFLOW_TEST_MQTT_URL", "mqtt://127.0.0.1:1883")
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 1883), 2).close()
    except OSError:
        pytest.skip(f"no MQTT 5 broker at {url} (set AMIFLOW_TEST_MQTT_URL)")
    return url


def start_worker(env: dict[str, str], prefix: str, log: Path) -> subprocess.Popen[bytes]:
    code = "import sys; from amiflow_app.cli import main; sys.exit(main())"
    args = [sys.executable, "-c", code, "-v", "ingest", "mqtt", "--prefix", prefix, "--http-port", "0"]
    return subprocess.Popen(args, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def count(conn: psycopg.Connection[Any], sql: str) -> int:
    row = conn.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def test_kill_9_mid_run_loses_and_doubles_nothing(
    db_url: str, db_conn: psycopg.Connection[Any], broker_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    meters = [f"K{i:02d}" for i in range(30)]
    for m in meters:
        add_meter(db_conn, MeterRecord(name=m, protocol="mqtt"))
    base = (int(time.time()) // 900) * 900 - 6 * 86400
    messages = [
        (f"{topic_prefix}/{m}/readings", readings_payload(m, base + 8 * 900 * k, 8, seq=k))
        for k in range(20)
        for m in meters
    ]
    total = len(messages) * 8
    tag = uuid.uuid4().hex[:10]
    env = {
        **os.environ,
        "AMIFLOW_DATABASE_URL": db_url,
        "AMIFLOW_MQTT_URL": broker_url,
        "AMIFLOW_DATA_DIR": str(tmp_path / "data"),
        "AMIFLOW_MQTT_CLIENT_ID": f"test-crash-{tag}",
        "AMIFLOW_MQTT_SHARE_GROUP": f"g{tag}",
        "AMIFLOW_MQTT_SESSION_EXPIRY_S": "300",
        "AMIFLOW_INGEST_BATCH_MAX_LATENCY_S": "0.1",
    }
    log = tmp_path / "worker.log"

    def stored() -> int:
        return count(db_conn, "SELECT count(*) FROM amiflow.readings")

    worker = start_worker(env, topic_prefix, log)
    try:
        # the session must exist before publishing, or the broker has nobody to keep messages for
        assert wait_for(lambda: "connected to MQTT" in log.read_text(errors="replace"), 20), log.read_text()
        publisher = threading.Thread(target=publish, args=(broker_url, messages), kwargs={"rate_per_s": 200})
        publisher.start()
        assert wait_for(lambda: stored() >= total // 4, 30), "the worker stored nothing"
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        at_kill = stored()
        assert 0 < at_kill < total, "the kill must land in the middle of the run"
        time.sleep(1.0)
        worker = start_worker(env, topic_prefix, log)
        publisher.join(60)
        assert wait_for(lambda: stored() >= total, 45), f"stored {stored()} of {total}\n{log.read_text()[-3000:]}"
        time.sleep(0.5)  # a late redelivery would show up as a conflict or an extra row
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            assert worker.wait(20) == 0, "SIGTERM must shut the worker down cleanly"
        finally:
            if worker.poll() is None:
                worker.kill()
    assert stored() == total
    per_key = count(db_conn, "SELECT count(*) FROM (SELECT DISTINCT meter_id, channel_id, ts FROM amiflow.readings) s")
    assert per_key == total
    assert count(db_conn, "SELECT count(*) FROM amiflow.reading_conflicts") == 0
    assert count(db_conn, "SELECT count(*) FROM amiflow.quarantine") == 0
