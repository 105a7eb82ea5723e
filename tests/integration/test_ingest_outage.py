"""PostgreSQL unreachable for ~30 s in the middle of a run (a TCP proxy this test controls, in front of the shared
server): the worker spools every batch durably, acknowledges it, survives a restart with a full spool, and replays
the spool in order once the database answers again. Nothing lost, nothing doubled."""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from amiflow.db.registry import MeterRecord, add_meter
from amiflow.settings import load_settings
from ingest.mqtt_worker import IngestWorker
from ingest.testing import TcpProxy, database_upstream, proxied_url, publish, readings_payload, wait_for

pytestmark = pytest.mark.timeout(150)
OUTAGE_S = float(os.environ.get("AMIFLOW_TEST_OUTAGE_S", "30"))


@pytest.fixture(scope="module")
def broker_url() -> str:
    url = os.environ.get("AMIFLOW_TEST_MQTT_URL", "mqtt://127.0.0.1:1883")
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 1883), 2).close()
    except OSError:
        pytest.skip(f"no MQTT 5 broker at {url} (set AMIFLOW_TEST_MQTT_URL)")
    return url


def test_database_outage_is_spooled_and_replayed(
    db_url: str, db_conn: psycopg.Connection[Any], broker_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    meters = [f"O{i:02d}" for i in range(20)]
    for m in meters:
        add_meter(db_conn, MeterRecord(name=m, protocol="mqtt"))
    base = (int(time.time()) // 900) * 900 - 7 * 86400

    def wave(k0: int, k1: int) -> list[tuple[str, bytes]]:
        return [
            (f"{topic_prefix}/{m}/readings", readings_payload(m, base + 8 * 900 * k, 8, seq=k))
            for k in range(k0, k1)
            for m in meters
        ]

    before, during, after = wave(0, 5), wave(5, 15), wave(15, 20)
    total = 8 * (len(before) + len(during) + len(after))
    proxy = TcpProxy(database_upstream(db_url)).start()
    tag = uuid.uuid4().hex[:10]
    settings = load_settings(
        mqtt_url=broker_url,
        data_dir=tmp_path / "data",
        mqtt_client_id=f"test-outage-{tag}",
        mqtt_share_group=f"g{tag}",
        ingest_batch_max_latency_s=0.1,
        mqtt_session_expiry_s=300,
    )
    url = proxied_url(db_url, proxy.port)
    stored = lambda: int(db_conn.execute("SELECT count(*) FROM amiflow.readings").fetchone()[0])  # type: ignore[index]  # noqa: E731
    worker = IngestWorker(settings, url, prefix=topic_prefix)
    worker.start()
    try:
        publish(broker_url, before)
        assert wait_for(lambda: stored() == 8 * len(before), 20)
        t_block = time.monotonic()
        proxy.block()
        publish(broker_url, during[: len(during) // 2])
        assert wait_for(lambda: worker.metrics.messages_spooled >= len(during) // 2, 20), worker.metrics.snapshot()
        assert not worker.metrics.db_available
        # a restart while the database is still away: the spool survives it
        worker.stop()
        spooled_first = worker.metrics.messages_spooled
        worker = IngestWorker(settings, url, prefix=topic_prefix)
        worker.start()
        publish(broker_url, during[len(during) // 2 :])
        assert wait_for(lambda: worker.metrics.messages_spooled >= len(during) - len(during) // 2, 20)
        assert stored() == 8 * len(before), "nothing reaches the database through a blocked proxy"
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - t_block)))
        proxy.unblock()
        publish(broker_url, after)
        assert wait_for(lambda: stored() >= total, 40), (stored(), total, worker.metrics.snapshot())
    finally:
        worker.stop()
        proxy.stop()
    m = worker.metrics.snapshot()
    # everything published while the database was away was spooled (and what arrived before the worker's next
    # probe noticed its return); the second worker replayed both workers' spool
    spooled = spooled_first + m["messages_spooled"]
    assert len(during) <= spooled <= len(during) + len(after), (spooled_first, m)
    assert m["messages_replayed"] == spooled
    assert m["readings_duplicate"] == 0
    assert m["spool_bytes"] == 0 and not worker.spool
    assert stored() == total
    assert db_conn.execute("SELECT count(*) FROM amiflow.reading_conflicts").fetchone() == (0,)
    assert db_conn.execute("SELECT count(*) FROM amiflow.quarantine").fetchone() == (0,)
