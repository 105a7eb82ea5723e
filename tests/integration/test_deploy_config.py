"""deploy/ is tested, not just shipped: the PostgreSQL roles enforce least privilege on a real server, and the
Mosquitto ACL pins each meter to its own topics on a real broker."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.fixture
def roles(db_conn: psycopg.Connection[Any]) -> Iterator[dict[str, str]]:
    """The deploy roles under names unique to this test (roles are cluster-wide), dropped afterwards."""
    tag = uuid.uuid4().hex[:8]
    names = {r: f"t{tag}_{r}" for r in ("owner", "ingest", "billing", "bridge", "readonly")}

    def rename(sql: str) -> str:
        for role, name in names.items():
            sql = sql.replace(f"amiflow_{role}", name)
        return sql

    db_conn.execute(rename((DEPLOY / "postgres/roles.sql").read_text()))
    db_conn.execute(rename((DEPLOY / "postgres/grants.sql").read_text()))
    try:
        yield names
    finally:
        for name in names.values():
            db_conn.execute(f'DROP OWNED BY "{name}"')
            db_conn.execute(f'DROP ROLE "{name}"')


def _as(conn: psycopg.Connection[Any], role: str, sql: str) -> None:
    with conn.transaction():
        conn.execute(f'SET LOCAL ROLE "{role}"')
        conn.execute(sql)


def test_roles_enforce_least_privilege(db_conn: psycopg.Connection[Any], roles: dict[str, str]) -> None:
    db_conn.execute("INSERT INTO amiflow.meters (name, protocol) VALUES ('R1', 'mqtt')")
    insert = (
        "INSERT INTO amiflow.readings (meter_id, channel_id, ts, value, source)"
        " SELECT id, 1, '2026-11-01T00:15:00Z', 1.0, 1 FROM amiflow.meters WHERE name = 'R1'"
    )
    _as(db_conn, roles["ingest"], insert)  # ingest may insert readings
    for forbidden in (
        "DELETE FROM amiflow.readings",
        "UPDATE amiflow.readings SET value = 2",
        "DELETE FROM amiflow.outbox",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            _as(db_conn, roles["ingest"], forbidden)
    for forbidden in ("SELECT * FROM amiflow.readings", insert, "SELECT * FROM amiflow.v_readings"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            _as(db_conn, roles["bridge"], forbidden)  # the bridge never touches readings
    _as(db_conn, roles["bridge"], "SELECT * FROM amiflow.outbox")
    _as(db_conn, roles["readonly"], "SELECT * FROM amiflow.v_readings")  # dashboards read the views
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        _as(db_conn, roles["readonly"], "SELECT * FROM amiflow.readings")
    _as(db_conn, roles["billing"], "SELECT count(*) FROM amiflow.readings")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        _as(db_conn, roles["billing"], "DELETE FROM amiflow.readings")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[int]:
    """A Mosquitto with deploy/'s ACL file and a password file, on a free loopback port, without TLS."""
    if not shutil.which("mosquitto") or not shutil.which("mosquitto_passwd"):
        pytest.skip("mosquitto is not installed on this machine")
    passwd = tmp_path / "passwd"
    for user in ("M1", "M2", "amiflow-ingest"):
        subprocess.run(
            ["mosquitto_passwd", "-b", *(["-c"] if not passwd.exists() else []), str(passwd), user, f"pw-{user}"],
            check=True,
            capture_output=True,
        )
    port = _free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}\n"
        f"acl_file {DEPLOY / 'mosquitto/acl.conf'}\npersistence false\nuser root\n"
    )
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def _client(port: int, user: str) -> mqtt.Client:
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"{user}-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5
    )
    client.username_pw_set(user, f"pw-{user}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def test_acl_pins_each_meter_to_its_own_topics(acl_broker: int) -> None:
    received: list[str] = []
    got = threading.Event()
    head_end = _client(acl_broker, "amiflow-ingest")
    head_end.on_message = lambda c, u, msg: (received.append(msg.topic), got.set())
    head_end.subscribe("ami/v1/+/readings", qos=1)
    time.sleep(0.3)
    m1 = _client(acl_broker, "M1")
    m1.publish("ami/v1/M2/readings", b'{"meter": "M2"}', qos=1).wait_for_publish(5)  # spoofing: refused
    m1.publish("ami/v1/M1/readings", b'{"meter": "M1"}', qos=1).wait_for_publish(5)
    assert got.wait(5)
    time.sleep(0.3)
    assert received == ["ami/v1/M1/readings"]
    for c in (m1, head_end):
        c.loop_stop()
        c.disconnect()
