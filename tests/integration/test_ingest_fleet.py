"""The fleet simulator with every fault kind on, through the broker and one ingest worker into PostgreSQL:
published = stored + duplicates + quarantined, reading for reading."""

from __future__ import annotations

import os
import socket
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from amiflow.settings import load_settings
from ingest.mqtt_worker import IngestWorker
from ingest.testing import wait_for
from simulators import FleetConfig, run_fleet

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


def scalar(conn: psycopg.Connection[Any], sql: str) -> int:
    row = conn.execute(sql).fetchone()
    assert row is not None
    return int(row[0] or 0)


def test_fleet_with_every_fault_kind_is_accounted_for(
    db_url: str, db_conn: psycopg.Connection[Any], broker_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    start = datetime.fromtimestamp((int(time.time()) // 86400 - 6) * 86400, UTC)
    config = FleetConfig(
        meters=25,
        start=start,
        days=4,
        seed=7,
        faults="all=0.03",
        prefix=topic_prefix,
        per_message=24,
        client_id=f"sim-{uuid.uuid4().hex[:8]}",
    )
    db_conn.execute(
        "INSERT INTO amiflow.meters (name, protocol) SELECT unnest(%s::text[]), 'mqtt'",
        ([config.meter_name(i) for i in range(config.meters)],),
    )
    tag = uuid.uuid4().hex[:10]
    settings = load_settings(
        mqtt_url=broker_url,
        data_dir=tmp_path,
        mqtt_client_id=f"test-fleet-{tag}",
        mqtt_share_group=f"g{tag}",
        ingest_batch_max_latency_s=0.1,
    )
    worker = IngestWorker(settings, db_url, prefix=topic_prefix)
    worker.start()
    try:
        stats = run_fleet(config, broker_url)
        settled = lambda: worker.metrics.messages_received >= stats.messages and worker.metrics.queue_depth == 0  # noqa: E731
        assert wait_for(settled, 30), (stats, worker.metrics.snapshot())
        time.sleep(0.5)
    finally:
        worker.stop()
    m = worker.metrics.snapshot()
    assert all(
        stats.faults.get(kind, 0) > 0
        for kind in ("dup", "reorder", "gap", "malformed", "spike", "drift", "rollover", "spoof")
    ), stats.faults
    stored = scalar(db_conn, "SELECT count(*) FROM amiflow.readings")
    quarantined = sum(m["quarantined_readings"].values())
    assert stored == stats.readings_expected == m["readings_stored"]
    assert m["readings_duplicate"] == stats.readings_duplicate and m["readings_conflict"] == 0
    assert quarantined == stats.readings_quarantined
    assert stats.readings_published == stored + m["readings_duplicate"] + quarantined
    # every bad message has a quarantine row with its raw bytes
    bad_messages = scalar(
        db_conn, "SELECT count(*) FROM amiflow.quarantine WHERE reason IN ('not_json', 'schema', 'meter_mismatch')"
    )
    assert bad_messages == stats.messages_quarantined
    assert scalar(db_conn, "SELECT count(*) FROM amiflow.quarantine WHERE raw = ''") == 0
    flagged = scalar(db_conn, "SELECT count(*) FROM amiflow.readings WHERE quality & (64 | 2048) <> 0")
    assert 0 < flagged <= stats.faults["rollover"]
    assert scalar(db_conn, "SELECT count(*) FROM amiflow.meter_events") >= stats.events
