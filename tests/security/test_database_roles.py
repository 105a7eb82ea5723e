"""Least privilege in the database, proven with LOGIN roles made by deploy/postgres/roles.sql and grants.sql (under
names unique to the test): the real ingest worker stores readings and quarantines bad payloads as the ingest role,
the real dispatcher delivers the outbox as the bridge role, and every statement outside a role's job is refused
with "permission denied" on its own connection."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from amiflow.db.meter_keys import MeterKey, load_meter_keys, set_meter_key
from amiflow.db.outbox import enqueue
from amiflow.db.registry import MeterRecord, add_meter
from amiflow.settings import load_settings
from billing_bridge.dispatcher import DispatchConfig, Dispatcher
from billing_bridge.receiver import Receiver, ReceiverConfig
from billing_bridge.sinks import WebhookSink
from ingest.mqtt_worker import IngestWorker
from ingest.testing import publish, readings_payload, wait_for

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "postgres"
ROLES = ("owner", "ingest", "billing", "bridge", "readonly")
T0 = 1_793_491_200  # 2026-11-01T00:00:00Z

FORBIDDEN: dict[str, list[str]] = {
    "ingest": [  # adds readings and what goes with them; changes or removes nothing stored
        "UPDATE amiflow.readings SET value = 0",
        "DELETE FROM amiflow.readings",
        "TRUNCATE amiflow.readings",
        "UPDATE amiflow.quarantine SET reason = 'x'",
        "DELETE FROM amiflow.quarantine",
        "INSERT INTO amiflow.bills (bill_id) VALUES ('B')",
        "INSERT INTO amiflow.outbox (kind, idempotency_key, payload) VALUES ('bill', 'k', '{}')",
        "SELECT * FROM amiflow.payments",
        "SELECT * FROM amiflow.api_keys",
        "INSERT INTO amiflow.meter_keys (meter_id, aes_key) VALUES (1, '\\x00112233445566778899aabbccddeeff')",
        "UPDATE amiflow.meter_keys SET aes_key = aes_key",
        "DELETE FROM amiflow.meter_keys",
        "ALTER TABLE amiflow.readings ADD COLUMN x int",
        "CREATE TABLE amiflow.mine (x int)",
        "DROP TABLE amiflow.quarantine",
    ],
    "bridge": [  # the outbox, payments and commands; never a reading
        "SELECT * FROM amiflow.readings",
        "SELECT * FROM amiflow.v_readings",
        "INSERT INTO amiflow.readings (meter_id, channel_id, ts, value, source) VALUES (1, 1, now(), 1, 1)",
        "UPDATE amiflow.readings SET value = 0",
        "DELETE FROM amiflow.readings",
        "SELECT * FROM amiflow.quarantine",
        "UPDATE amiflow.bills SET total = 0",
        "DELETE FROM amiflow.outbox",
        "SELECT * FROM amiflow.api_keys",
        "SELECT * FROM amiflow.meter_keys",
        "CREATE TABLE amiflow.mine (x int)",
    ],
    "billing": [  # reads readings, writes bills; alters no reading
        "UPDATE amiflow.readings SET value = 0",
        "DELETE FROM amiflow.readings",
        "INSERT INTO amiflow.readings (meter_id, channel_id, ts, value, source) VALUES (1, 1, now(), 1, 1)",
        "DELETE FROM amiflow.quarantine",
        "INSERT INTO amiflow.payments (payment_id, account, amount, currency, paid_at) VALUES"
        " ('P', 'A', 1, 'USD', now())",
        "SELECT * FROM amiflow.api_keys",
        "SELECT * FROM amiflow.meter_keys",
        "DROP TABLE amiflow.bills",
    ],
    "readonly": [  # reports and dashboards: the contract views, read only
        "SELECT * FROM amiflow.readings",
        "SELECT * FROM amiflow.outbox",
        "SELECT * FROM amiflow.payments",
        "INSERT INTO amiflow.quarantine (source, reason, raw) VALUES ('x', 'y', '')",
        "DELETE FROM amiflow.bills",
        "UPDATE amiflow.meters SET tariff = 'x'",
        "SELECT * FROM amiflow.api_keys",
        "SELECT * FROM amiflow.meter_keys",
        "CREATE TABLE amiflow.mine (x int)",
    ],
}


@pytest.fixture
def roles(db_url: str, db_conn: psycopg.Connection[Any]) -> Iterator[dict[str, str]]:
    """The deploy roles (LOGIN) under names unique to this test (roles are cluster-wide); role -> login URL."""
    tag = uuid.uuid4().hex[:8]
    names = {r: f"t{tag}_{r}" for r in ROLES}

    def rename(sql: str) -> str:
        for role, name in names.items():
            sql = sql.replace(f"amiflow_{role}", name)
        return sql

    db_conn.execute(rename((DEPLOY / "roles.sql").read_text()))
    db_conn.execute(rename((DEPLOY / "grants.sql").read_text()))
    try:
        yield {role: make_conninfo(db_url, user=name) for role, name in names.items()}
    finally:
        db_conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ANY(%s)",
                        (list(names.values()),))  # fmt: skip
        for name in names.values():
            db_conn.execute(f'DROP OWNED BY "{name}"')
            db_conn.execute(f'DROP ROLE "{name}"')


@pytest.mark.parametrize("role", sorted(FORBIDDEN))
def test_every_statement_outside_a_roles_job_is_refused(roles: dict[str, str], role: str) -> None:
    with psycopg.connect(roles[role], autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (roles[role].split("user=")[1].split()[0],)
        for statement in FORBIDDEN[role]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match=r"permission denied|must be owner"):
                conn.execute(statement)


def test_only_ingest_reads_the_meters_aes_keys(roles: dict[str, str], db_conn: psycopg.Connection[Any]) -> None:
    add_meter(db_conn, MeterRecord(name="K1", protocol="mbus", uri="mbus+tcp://127.0.0.1:1?address=1"))
    set_meter_key(db_conn, "K1", MeterKey(bytes(range(16))))
    with psycopg.connect(roles["ingest"], autocommit=True) as conn:  # the poller and the wM-Bus receiver
        assert {k: v.raw for k, v in load_meter_keys(conn).items()} == {"K1": bytes(range(16))}


def test_reports_read_every_contract_view(roles: dict[str, str]) -> None:
    with psycopg.connect(roles["readonly"], autocommit=True) as conn:
        for view in ("v_readings", "v_daily_energy", "v_quarantine", "v_bills", "v_outbox"):
            conn.execute(f"SELECT * FROM amiflow.{view} LIMIT 1")


def test_the_ingest_worker_runs_as_the_ingest_role(
    roles: dict[str, str], db_conn: psycopg.Connection[Any], mqtt_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    add_meter(db_conn, MeterRecord(name="R1", protocol="mqtt"))
    tag = uuid.uuid4().hex[:8]
    settings = load_settings(mqtt_url=mqtt_url, data_dir=tmp_path, mqtt_client_id=f"roles-{tag}",
                             mqtt_share_group=f"g{tag}", ingest_batch_max_latency_s=0.2,
                             reading_horizon_days=36500)  # fmt: skip
    worker = IngestWorker(settings, roles["ingest"], prefix=topic_prefix)
    worker.start()
    try:
        publish(mqtt_url, [(f"{topic_prefix}/R1/readings", readings_payload("R1", T0, 8)),
                           (f"{topic_prefix}/R1/readings", b"{not json")])  # fmt: skip
        stored = "SELECT (SELECT count(*) FROM amiflow.v_readings), (SELECT count(*) FROM amiflow.v_quarantine)"
        assert wait_for(lambda: db_conn.execute(stored).fetchone() == (8, 1), 15), db_conn.execute(stored).fetchone()
    finally:
        worker.stop()
    assert worker.metrics.readings_stored == 8


def test_the_dispatcher_runs_as_the_bridge_role(roles: dict[str, str], db_conn: psycopg.Connection[Any]) -> None:
    for i in range(5):
        enqueue(db_conn, kind="bill", idempotency_key=f"k{i}", payload={"bill_id": f"B{i}"}, account="A")
    secret = b"roles-secret"
    with Receiver(ReceiverConfig(secret, require_timestamp=True)) as receiver:
        config = DispatchConfig(lease_s=5.0, request_timeout_s=2.0, max_wait_s=10.0, poll_s=0.1)
        stats = asyncio.run(Dispatcher(roles["bridge"], WebhookSink(receiver.url, secret), config).run())
        assert stats.delivered == 5 and sorted(receiver.snapshot().deliveries) == [f"k{i}" for i in range(5)]
    assert db_conn.execute("SELECT count(*) FROM amiflow.outbox WHERE state = 'delivered'").fetchone() == (5,)
