"""An ``amiflow ingest mqtt`` worker (re)started while the database is away starts anyway: it spools what it
receives, migrates once the database answers, then drains the spool into it. Nothing is lost or doubled."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from amiflow.db.registry import MeterRecord, add_meter
from ingest.testing import TcpProxy, database_upstream, publish, readings_payload, wait_for

pytestmark = pytest.mark.timeout(120)


def _through(url: str, port: int) -> str:
    """``url`` as a postgresql:// URL connecting through 127.0.0.1:``port`` (the settings take URLs only)."""
    info = conninfo_to_dict(url)
    return f"postgresql://{info.get('user') or 'postgres'}@127.0.0.1:{port}/{info['dbname']}"


def test_worker_started_during_an_outage_spools_then_drains(
    db_url: str, db_conn: psycopg.Connection[Any], topic_prefix: str, tmp_path: Path
) -> None:
    broker = os.environ.get("AMIFLOW_TEST_MQTT_URL", "mqtt://127.0.0.1:1883")
    parts = urlsplit(broker)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 1883), 2).close()
    except OSError:
        pytest.skip(f"no MQTT 5 broker at {broker} (set AMIFLOW_TEST_MQTT_URL)")
    meters = [f"D{i:02d}" for i in range(10)]
    for m in meters:
        add_meter(db_conn, MeterRecord(name=m, protocol="mqtt"))
    base = (int(time.time()) // 900) * 900 - 3 * 86400
    messages = [
        (f"{topic_prefix}/{m}/readings", readings_payload(m, base + 4 * 900 * k, 4, seq=k))
        for k in range(6)
        for m in meters
    ]
    proxy = TcpProxy(database_upstream(db_url)).start()
    proxy.block()  # the database is away before the worker starts
    tag = uuid.uuid4().hex[:10]
    env = {k: v for k, v in os.environ.items() if k != "AMIFLOW_HTTP_PORT"}
    env.update(
        AMIFLOW_DATABASE_URL=_through(db_url, proxy.port),
        AMIFLOW_MQTT_URL=broker,
        AMIFLOW_DATA_DIR=str(tmp_path / "data"),
        AMIFLOW_MQTT_CLIENT_ID=f"outage-start-{tag}",
        AMIFLOW_MQTT_SHARE_GROUP=f"g{tag}",
        AMIFLOW_INGEST_BATCH_MAX_LATENCY_S="0.1",
    )
    log = tmp_path / "worker.log"
    cmd = [sys.executable, "-m", "amiflow_app", "-v", "ingest", "mqtt", "--prefix", topic_prefix]
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)

    def stored() -> int:
        row = db_conn.execute("SELECT count(*) FROM amiflow.readings").fetchone()
        assert row is not None
        return int(row[0])

    try:
        assert wait_for(lambda: "spooling" in log.read_text(errors="replace") or proc.poll() is not None, 20)
        assert proc.poll() is None, log.read_text(errors="replace")
        publish(broker, messages)
        assert wait_for(lambda: (tmp_path / "data" / "spool").exists(), 10)
        time.sleep(2)
        assert stored() == 0 and proc.poll() is None
        proxy.unblock()
        assert wait_for(lambda: stored() == 4 * len(messages), 40), (stored(), log.read_text(errors="replace"))
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        proxy.stop()
    assert code == 0, log.read_text(errors="replace")
    assert stored() == 4 * len(messages)
    assert db_conn.execute("SELECT count(*) FROM amiflow.quarantine").fetchone() == (0,)
