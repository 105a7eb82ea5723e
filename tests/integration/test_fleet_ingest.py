"""The fleet simulator into the real ingest worker and PostgreSQL: its stats match what a head-end stores."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from amiflow.db.registry import MeterRecord, add_meter
from amiflow.settings import load_settings
from ingest.mqtt_worker import IngestWorker
from ingest.testing import wait_for
from simulators import FleetConfig, run_fleet


def count(conn: psycopg.Connection[Any], sql: str) -> int:
    row = conn.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("per_message", [4, 96])
def test_fleet_with_every_fault_is_stored_exactly(
    mqtt_url: str, topic_prefix: str, db_url: str, db_conn: psycopg.Connection[Any], tmp_path: Path, per_message: int
) -> None:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    config = FleetConfig(
        meters=12, start=today - timedelta(days=3), days=2, per_message=per_message, faults="all=0.03", seed=11,
        prefix=topic_prefix, client_id=f"fleet-{uuid.uuid4().hex[:8]}",
    )  # fmt: skip
    for m in range(config.meters):
        add_meter(db_conn, MeterRecord(name=config.meter_name(m), protocol="mqtt"))
    tag = uuid.uuid4().hex[:10]
    settings = load_settings(
        mqtt_url=mqtt_url, data_dir=tmp_path / tag, mqtt_client_id=f"ingest-{tag}", mqtt_share_group=f"g{tag}",
        ingest_batch_max_latency_s=0.2, mqtt_session_expiry_s=120,
    )  # fmt: skip
    worker = IngestWorker(settings, db_url, prefix=topic_prefix)
    worker.start()
    try:
        stats = run_fleet(config, mqtt_url)
        wait_for(lambda: worker.metrics.messages_received >= stats.messages, 60)
        wait_for(lambda: count(db_conn, "SELECT count(*) FROM amiflow.readings") >= stats.readings_expected, 30)
    finally:
        worker.stop()
    snap: dict[str, Any] = worker.metrics.snapshot()
    stored = count(db_conn, "SELECT count(*) FROM amiflow.readings")
    assert stored == stats.readings_expected
    assert snap["readings_duplicate"] + snap["readings_conflict"] == stats.readings_duplicate
    assert sum(snap["quarantined_readings"].values()) == stats.readings_quarantined
    assert count(db_conn, "SELECT count(*) FROM amiflow.quarantine") >= stats.messages_quarantined
    assert stats.readings_published == stored + stats.readings_duplicate + stats.readings_quarantined
