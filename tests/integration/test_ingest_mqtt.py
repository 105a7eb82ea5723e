"""MQTT ingest against the real broker and PostgreSQL: every fault kind accounted for, a meter claiming another
meter's id, two workers splitting one shared subscription."""

from __future__ import annotations

import json
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
from amiflow.settings import Settings, load_settings
from ingest.mqtt_worker import IngestWorker
from ingest.testing import iso, publish, readings_payload, wait_for

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def broker_url() -> str:
    """A real MQTT 5 broker (shared subscriptions): AMIFLOW_TEST_MQTT_URL or the local Mosquitto."""
    url = os.environ.get("AMIFLOW_TEST_MQTT_URL", "mqtt://127.0.0.1:1883")
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 1883), 2).close()
    except OSError:
        pytest.skip(f"no MQTT 5 broker at {url} (set AMIFLOW_TEST_MQTT_URL)")
    return url


def worker_settings(tmp_path: Path, broker_url: str, **changes: Any) -> Settings:
    tag = uuid.uuid4().hex[:10]
    values: dict[str, Any] = {
        "mqtt_url": broker_url,
        "data_dir": tmp_path / tag,
        "mqtt_client_id": f"test-ingest-{tag}",
        "mqtt_share_group": f"g{tag}",
        "ingest_batch_max_latency_s": 0.2,
        "mqtt_session_expiry_s": 120,
    }
    values.update(changes)
    return load_settings(**values)


def register(conn: psycopg.Connection[Any], names: list[str]) -> None:
    for n in names:
        add_meter(conn, MeterRecord(name=n, protocol="mqtt"))


def count(conn: psycopg.Connection[Any], sql: str, *args: Any) -> int:
    row = conn.execute(sql, args).fetchone()
    assert row is not None
    return int(row[0])


def reading(obis: str, ts: int, value: Any, unit: str = "kWh") -> dict[str, Any]:
    return {"obis": obis, "ts": iso(ts), "value": value, "unit": unit}


def msg(prefix: str, topic_meter: str, meter: str, readings: list[dict[str, Any]]) -> tuple[str, bytes]:
    return f"{prefix}/{topic_meter}/readings", json.dumps({"meter": meter, "readings": readings}).encode()


def test_every_fault_kind_is_accounted_for(
    db_url: str, db_conn: psycopg.Connection[Any], broker_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    meters = [f"F{i:02d}" for i in range(10)]
    register(db_conn, meters)
    base = (int(time.time()) // 900) * 900 - 3 * 86400
    good = [
        (f"{topic_prefix}/{m}/readings", readings_payload(m, base + 24 * 900 * k, 24, seq=k))
        for m in meters
        for k in range(4)
    ]
    p = topic_prefix
    day = 86400
    faults: list[tuple[str, bytes]] = [
        good[0],  # a redelivered message: 24 duplicates
        msg(p, "F01", "F01", [reading("1-0:1.29.0", base, 9.999)]),  # conflict with the stored interval
        (f"{p}/F02/readings", b"{not json"),  # not_json
        msg(p, "F02", "F03", [reading("1-0:1.29.0", base + 900 * k, 0.1) for k in range(5)]),  # meter_mismatch
        msg(p, "X99", "X99", [reading("1-0:1.29.0", base + 900 * k, 0.1) for k in range(3)]),  # unknown_meter
        (
            f"{p}/F04/readings",
            b'{"meter":"F04","readings":[{"obis":"1-0:1.29.0","ts":"%s","value":NaN,"unit":"kWh"}]}'
            % iso(base - day).encode(),
        ),  # not_finite
        msg(p, "F05", "F05", [reading("1-0:1.29.0", int(time.time()) + 3600, 0.1)]),  # future_ts
        msg(p, "F05", "F05", [reading("1-0:1.29.0", base - 500 * day, 0.1)]),  # too_old
        msg(p, "F05", "F05", [reading("1-0:1.29.0", base - 2 * day, -0.5)]),  # negative_interval
        msg(p, "F05", "F05", [reading("1-0:1.29.0", base - 3 * day, 9e9)]),  # implausible (9 TWh)
        msg(
            p,
            "F05",
            "F05",
            [reading("1-0:1.29.300", base - 4 * day, 1), {"obis": "1.8.0", "ts": "x", "value": 1, "unit": "kWh"}],
        ),  # bad_obis, bad_ts
        msg(p, "F05", "F05", [reading("1-0:1.29.0", base - 5 * day, 1, "furlong")]),  # unknown_unit
        # a cumulative register going back: stored, flagged non_monotonic
        msg(p, "F06", "F06", [reading("1-0:1.8.0", base + 900 * k, v) for k, v in enumerate((100, 200, 150))]),
        (f"{p}/F07/events", json.dumps({"meter": "F07", "events": [{"ts": iso(base), "code": "tamper"}]}).encode()),
        (f"{p}/F07/status", json.dumps({"state": "offline", "ts": iso(base + 60)}).encode()),
    ]
    bad_reading_messages = len(faults[2:12])
    # good, duplicate, conflict, mismatch, unknown meter, NaN, 4 bounds, bad obis + ts, unit, registers
    published_readings = 960 + 24 + 1 + 5 + 3 + 1 + 4 + 2 + 1 + 3
    worker = IngestWorker(worker_settings(tmp_path, broker_url), db_url, prefix=topic_prefix)
    worker.start()
    try:
        publish(broker_url, good + faults)
        expected_stored = 960 + 3
        wait_for(lambda: worker.metrics.messages_received >= len(good) + len(faults), 30)
        wait_for(lambda: count(db_conn, "SELECT count(*) FROM amiflow.quarantine") >= bad_reading_messages + 1, 10)
    finally:
        worker.stop()
    m = worker.metrics.snapshot()
    stored = count(db_conn, "SELECT count(*) FROM amiflow.readings")
    assert stored == expected_stored
    assert m["readings_stored"] == stored
    accounted = m["readings_stored"] + m["readings_duplicate"] + m["readings_conflict"]
    assert accounted + sum(m["quarantined_readings"].values()) == published_readings
    assert m["readings_duplicate"] == 24 and m["readings_conflict"] == 1
    assert m["messages_acked"] == m["messages_received"] == len(good) + len(faults)  # stop() acknowledged everything
    reasons = dict(db_conn.execute("SELECT reason, count(*) FROM amiflow.quarantine GROUP BY reason").fetchall())
    assert reasons == {
        "not_json": 1,
        "meter_mismatch": 1,
        "unknown_meter": 1,
        "not_finite": 1,
        "future_ts": 1,
        "too_old": 1,
        "negative_interval": 1,
        "implausible": 1,
        "bad_obis": 1,
        "bad_ts": 1,
        "unknown_unit": 1,
    }
    raw = db_conn.execute("SELECT raw FROM amiflow.quarantine WHERE reason = 'not_json'").fetchone()
    assert raw is not None and bytes(raw[0]) == b"{not json"
    flags = db_conn.execute(
        "SELECT value, quality FROM amiflow.v_readings WHERE meter = 'F06' AND obis = '1-0:1.8.0' ORDER BY ts"
    ).fetchall()
    assert [(v, q) for v, q in flags] == [(100_000.0, []), (200_000.0, []), (150_000.0, ["non_monotonic"])]
    assert count(db_conn, "SELECT count(*) FROM amiflow.reading_conflicts") == 1
    events = db_conn.execute(
        "SELECT e.code FROM amiflow.meter_events e JOIN amiflow.meters m ON m.id = e.meter_id"
        " WHERE m.name = 'F07' ORDER BY e.ts"
    ).fetchall()
    assert [e[0] for e in events] == ["tamper", "offline"]
    state = db_conn.execute("SELECT state, last_seen_at IS NOT NULL FROM amiflow.meters WHERE name = 'F07'").fetchone()
    assert state == ("offline", True)


def test_payload_claiming_another_meter_is_quarantined(
    db_url: str, db_conn: psycopg.Connection[Any], broker_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    register(db_conn, ["VICTIM", "ROGUE"])
    base = (int(time.time()) // 900) * 900 - 86400
    forged = readings_payload("VICTIM", base, 4, value=99.0)
    worker = IngestWorker(worker_settings(tmp_path, broker_url), db_url, prefix=topic_prefix)
    worker.start()
    try:
        publish(broker_url, [(f"{topic_prefix}/ROGUE/readings", forged)])
        wait_for(lambda: count(db_conn, "SELECT count(*) FROM amiflow.quarantine"), 15)
    finally:
        worker.stop()
    rows = db_conn.execute("SELECT reason, meter, raw FROM amiflow.v_quarantine").fetchall()
    assert [(r, m, bytes(raw)) for r, m, raw in rows] == [("meter_mismatch", "ROGUE", forged)]
    assert count(db_conn, "SELECT count(*) FROM amiflow.readings") == 0


def test_unknown_meter_auto_registered_as_unverified(
    db_url: str, db_conn: psycopg.Connection[Any], broker_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    base = (int(time.time()) // 900) * 900 - 86400
    settings = worker_settings(tmp_path, broker_url, unknown_meter_policy="register")
    worker = IngestWorker(settings, db_url, prefix=topic_prefix)
    worker.start()
    try:
        publish(broker_url, [(f"{topic_prefix}/NEW1/readings", readings_payload("NEW1", base, 3))])
        wait_for(lambda: count(db_conn, "SELECT count(*) FROM amiflow.readings") == 3, 15)
    finally:
        worker.stop()
    assert db_conn.execute("SELECT status FROM amiflow.meters WHERE name = 'NEW1'").fetchone() == ("unverified",)
    quality = db_conn.execute("SELECT DISTINCT quality FROM amiflow.v_readings WHERE meter = 'NEW1'").fetchall()
    assert quality == [(["unverified_meter"],)]


def test_two_workers_split_a_shared_subscription(
    db_url: str, db_conn: psycopg.Connection[Any], broker_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    meters = [f"S{i:02d}" for i in range(20)]
    register(db_conn, meters)
    base = (int(time.time()) // 900) * 900 - 5 * 86400
    messages = [
        (f"{topic_prefix}/{m}/readings", readings_payload(m, base + 8 * 900 * k, 8, seq=k))
        for k in range(20)
        for m in meters
    ]
    first = worker_settings(tmp_path, broker_url, ingest_batch_max_latency_s=0.05)
    second = first.model_copy(update={"mqtt_client_id": first.mqtt_client_id + "-b", "data_dir": tmp_path / "b"})
    workers = [IngestWorker(s, db_url, prefix=topic_prefix) for s in (first, second)]
    for w in workers:
        w.start()
    try:
        publish(broker_url, messages, window=50)
        total = len(messages) * 8
        wait_for(lambda: count(db_conn, "SELECT count(*) FROM amiflow.readings") >= total, 30)
    finally:
        for w in workers:
            w.stop()
    got = [w.metrics.snapshot() for w in workers]
    assert all(g["messages_received"] > 0 for g in got), "both workers must take part"
    assert sum(g["messages_received"] for g in got) == len(messages)
    assert sum(g["readings_stored"] for g in got) == total
    assert count(db_conn, "SELECT count(*) FROM amiflow.readings") == total
    per_meter = db_conn.execute(
        "SELECT count(DISTINCT meter_id), min(n), max(n) FROM"
        " (SELECT meter_id, count(*) n FROM amiflow.readings GROUP BY meter_id) s"
    ).fetchone()
    assert per_meter == (20, 160, 160)


def test_a_message_the_database_refuses_is_quarantined_and_the_rest_stored(
    db_url: str, db_conn: psycopg.Connection[Any], broker_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    register(db_conn, ["Q1", "Q2"])
    base = (int(time.time()) // 900) * 900 - 86400
    # PostgreSQL's jsonb cannot hold \u0000: the whole batch fails, then each message alone, then only this one
    poison = (
        b'{"meter": "Q1", "events": [{"ts": "%s", "code": "tamper", "detail": {"x": "a\\u0000b"}}]}'
        % iso(base).encode()
    )
    messages = [
        (f"{topic_prefix}/Q1/readings", readings_payload("Q1", base, 4)),
        (f"{topic_prefix}/Q1/events", poison),
        (f"{topic_prefix}/Q2/readings", readings_payload("Q2", base, 4)),
    ]
    worker = IngestWorker(
        worker_settings(tmp_path, broker_url, ingest_batch_max_latency_s=1.0), db_url, prefix=topic_prefix
    )
    worker.start()
    try:
        publish(broker_url, messages)
        assert wait_for(lambda: count(db_conn, "SELECT count(*) FROM amiflow.quarantine") == 1, 15)
        assert wait_for(lambda: count(db_conn, "SELECT count(*) FROM amiflow.readings") == 8, 5)
    finally:
        worker.stop()
    row = db_conn.execute("SELECT reason, raw FROM amiflow.quarantine").fetchone()
    assert row is not None and row[0] == "store_error" and bytes(row[1]) == poison
    assert worker.metrics.messages_acked == 3
