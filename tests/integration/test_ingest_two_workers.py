"""Two ``amiflow ingest mqtt`` workers started with defaults on one host both run: a worker serves /health only on a
port it is given, so they do not collide on AMIFLOW_HTTP_PORT's default (which belongs to ``amiflow serve``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.timeout(90)


def test_two_default_workers_share_a_host(db_url: str, topic_prefix: str, tmp_path: Path) -> None:
    broker = os.environ.get("AMIFLOW_TEST_MQTT_URL", "mqtt://127.0.0.1:1883")
    parts = urlsplit(broker)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 1883), 2).close()
    except OSError:
        pytest.skip(f"no MQTT 5 broker at {broker} (set AMIFLOW_TEST_MQTT_URL)")
    with socket.socket() as probe:  # the default API port must be free for the test to mean anything
        if probe.connect_ex(("127.0.0.1", 8080)) == 0:
            pytest.skip("something already listens on 127.0.0.1:8080")
    tag = uuid.uuid4().hex[:8]
    env = {k: v for k, v in os.environ.items() if k != "AMIFLOW_HTTP_PORT"}
    env.update(AMIFLOW_DATABASE_URL=db_url, AMIFLOW_MQTT_URL=broker, AMIFLOW_MQTT_SHARE_GROUP=f"g{tag}")
    procs = []
    for i in range(2):
        args = ["ingest", "mqtt", "--prefix", topic_prefix, "--client-id", f"two-{tag}-{i}"]
        log = (tmp_path / f"w{i}.log").open("wb")
        worker_env = {**env, "AMIFLOW_DATA_DIR": str(tmp_path / f"data{i}")}
        cmd = [sys.executable, "-m", "amiflow_app", *args]
        procs.append(subprocess.Popen(cmd, env=worker_env, stdout=log, stderr=subprocess.STDOUT))
    try:
        time.sleep(4)
        logs = [(tmp_path / f"w{i}.log").read_text(errors="replace") for i in range(2)]
        assert [p.poll() for p in procs] == [None, None], logs
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(30) for p in procs]
    assert codes == [0, 0]
