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

    def stored() -> int:
        row = db_conn.execute("SELECT count(*) FROM amiflow.readings").fetchone()
        assert row is not None
        return int(row[0])

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
    snap = worker.metrics.snapshot()
    # everything published while the database was away was spooled (and what arrived before the worker's next
    # probe noticed its return); the second worker replayed both workers' spool
    spooled = spooled_first + snap["messages_spooled"]
    assert len(during) <= spooled <= len(during) + len(after), (spooled_first, snap)
    assert snap["messages_replayed"] == spooled
    assert snap["readings_duplicate"] == 0
    assert snap["spool_bytes"] == 0 and not worker.spool
    assert stored() == total
    assert db_conn.execute("SELECT count(*) FROM amiflow.reading_conflicts").fetchone() == (0,)
    assert db_conn.execute("SELECT count(*) FROM amiflow.quarantine").fetchone() == (0,)


def test_full_spool_stops_acknowledging_and_raises_the_alarm(
    db_url: str, db_conn: psycopg.Connection[Any], broker_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    import json
    import urllib.error
    import urllib.request

    from ingest.metrics import MetricsServer

    meters = [f"P{i:02d}" for i in range(10)]
    for m in meters:
        add_meter(db_conn, MeterRecord(name=m, protocol="mqtt"))
    base = (int(time.time()) // 900) * 900 - 30 * 86400
    messages = [
        (f"{topic_prefix}/{m}/readings", readings_payload(m, base + 96 * 900 * k, 96, seq=k))
        for k in range(16)
        for m in meters
    ]  # 160 x 8 KB: more than the 1 MiB bound below
    assert sum(len(p) for _, p in messages) > 1 << 20 > len(messages[0][1]) * 20
    proxy = TcpProxy(database_upstream(db_url)).start()
    tag = uuid.uuid4().hex[:10]
    settings = load_settings(
        mqtt_url=broker_url,
        data_dir=tmp_path / "data",
        mqtt_client_id=f"test-full-{tag}",
        mqtt_share_group=f"g{tag}",
        ingest_batch_max_latency_s=0.1,
        ingest_batch_max_readings=960,
        spool_max_bytes=1 << 20,
    )
    worker = IngestWorker(settings, proxied_url(db_url, proxy.port), prefix=topic_prefix)
    server = MetricsServer(worker.metrics, "127.0.0.1", 0)
    server.start()
    base_url = f"http://127.0.0.1:{server.port}"

    def health() -> int:
        try:
            return int(urllib.request.urlopen(base_url + "/health", timeout=5).status)
        except urllib.error.HTTPError as exc:
            return exc.code

    proxy.block()
    worker.start()
    try:
        publish(broker_url, messages)
        assert wait_for(lambda: worker.metrics.spool_full, 20), worker.metrics.snapshot()
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(base_url + "/health", timeout=5)
        assert err.value.code == 503 and json.loads(err.value.read())["spool_full"] is True
        text = urllib.request.urlopen(base_url + "/metrics", timeout=5).read().decode()
        assert "amiflow_ingest_spool_full 1" in text
        acked = worker.metrics.messages_acked
        assert 0 < acked < len(messages), "acknowledgements stop at the bound"
        time.sleep(1.0)
        assert worker.metrics.messages_acked == acked
        proxy.unblock()
        total = 96 * len(messages)
        assert wait_for(lambda: db_conn.execute("SELECT count(*) FROM amiflow.readings").fetchone() == (total,), 40)
        assert wait_for(lambda: health() == 200, 10)
    finally:
        worker.stop()
        server.stop()
        proxy.stop()
    assert not worker.metrics.spool_full and worker.metrics.messages_acked == len(messages)
