"""MQTT security on a real Mosquitto started from deploy/mosquitto (TLS listener with a test CA, the ACL, a password
file written by ``amiflow meters credentials``): a meter publishes and reads only its own topics, the ingest worker's
account reads every meter through the shared subscription, and nothing gets in without TLS and a password."""

from __future__ import annotations

import base64
import shutil
import socket
import ssl
import stat
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from amiflow.db.registry import MeterRecord, add_meter
from amiflow.settings import load_settings
from amiflow_app.broker_credentials import check_password, fleet_credentials, hash_password, read_secrets
from amiflow_app.cli import main
from ingest.mqtt_worker import IngestWorker
from ingest.testing import readings_payload, wait_for
from tests.security.conftest import CertFiles, SecureBroker, make_ca

pytestmark = pytest.mark.timeout(120)

T0 = 1_793_491_200  # 2026-11-01T00:00:00Z
NOT_AUTHORIZED = 135  # MQTT 5 reason code of a refused PUBLISH (PUBACK) or CONNECT


@dataclass
class Peer:
    """A connected paho client with what it received and the PUBACK reason of each of its publishes."""

    client: mqtt.Client
    received: list[tuple[str, bytes]] = field(default_factory=list)
    acks: dict[int, int] = field(default_factory=dict)
    arrived: threading.Event = field(default_factory=threading.Event)

    def publish(self, topic: str, payload: bytes) -> int:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(5)
        assert wait_for(lambda: info.mid in self.acks, 5), f"no PUBACK for {topic}"
        return self.acks[info.mid]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def connect(port: int, user: str | None, password: str | None, ca: Path | None) -> tuple[Peer | None, int | str]:
    """Connect over TLS (``ca`` given) as ``user``: the peer and 0, or None and the CONNACK reason / the error."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"{user or 'anon'}-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5
    )
    peer = Peer(client)
    answered = threading.Event()
    reason: list[int] = []
    if user is not None:
        client.username_pw_set(user, password)
    if ca is not None:
        client.tls_set(ca_certs=str(ca))

    def on_connect(c: Any, u: Any, flags: Any, rc: Any, props: Any) -> None:
        reason.append(int(rc.value))
        answered.set()

    def on_message(c: Any, u: Any, msg: Any) -> None:
        peer.received.append((msg.topic, bytes(msg.payload)))
        peer.arrived.set()

    client.on_connect = on_connect
    client.on_message = on_message
    client.on_publish = lambda c, u, mid, rc, props: peer.acks.__setitem__(mid, int(rc.value))
    try:
        client.connect("127.0.0.1", port, keepalive=10)
    except (OSError, ssl.SSLError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    client.loop_start()
    if not answered.wait(5) or reason[0] != 0:
        client.loop_stop()
        client.disconnect()
        return None, reason[0] if reason else "no CONNACK"
    return peer, 0


@pytest.fixture
def fleet(db_url: str, db_conn: psycopg.Connection[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Meters MA and MB (MQTT), a Modbus meter and an inactive MQTT meter, and their credentials from the command."""
    for record in (
        MeterRecord(name="MA", protocol="mqtt"),
        MeterRecord(name="MB", protocol="mqtt"),
        MeterRecord(name="MODBUS1", protocol="modbus", uri="modbus+tcp://127.0.0.1:502?unit=1"),
        MeterRecord(name="RETIRED", protocol="mqtt", status="inactive"),
    ):
        add_meter(db_conn, record)
    monkeypatch.setenv("AMIFLOW_DATABASE_URL", db_url)
    passwd, secrets = tmp_path / "passwd", tmp_path / "mqtt-passwords.txt"
    assert main(["meters", "credentials", "--out", str(passwd), "--secrets", str(secrets)]) == 0
    return passwd, secrets


def test_the_command_writes_what_mosquitto_accepts(fleet: Any, broker_factory: Any, test_ca: CertFiles) -> None:
    passwd, secrets = fleet
    plain = read_secrets(secrets)
    assert sorted(plain) == ["MA", "MB", "amiflow-bridge", "amiflow-ingest"]  # no Modbus, no inactive meter
    assert stat.S_IMODE(passwd.stat().st_mode) == 0o600 and stat.S_IMODE(secrets.stat().st_mode) == 0o600
    entries = dict(line.split(":", 1) for line in passwd.read_text().splitlines())
    assert all(entry.startswith("$7$101$") and check_password(plain[u], entry) for u, entry in entries.items())
    broker: SecureBroker = broker_factory(passwd)
    peer, reason = connect(broker.port, "MA", plain["MA"], test_ca.ca)
    assert peer is not None, reason
    peer.close()
    for user, password in (("MA", plain["MB"]), ("MODBUS1", "x"), ("RETIRED", "x"), (None, None)):
        refused, why = connect(broker.port, user, password, test_ca.ca)
        assert refused is None and why == NOT_AUTHORIZED, (user, why)  # wrong password, unknown user, anonymous


def test_a_second_run_keeps_every_password(fleet: Any, db_conn: psycopg.Connection[Any], tmp_path: Path) -> None:
    passwd, secrets = fleet
    before, first_file = read_secrets(secrets), passwd.read_text()
    add_meter(db_conn, MeterRecord(name="MC", protocol="mqtt"))
    assert main(["meters", "credentials", "--out", str(passwd), "--secrets", str(secrets)]) == 0
    after = read_secrets(secrets)
    assert {u: after[u] for u in before} == before and "MC" in after
    assert passwd.read_text() != first_file  # new salts, same passwords
    entries = dict(line.split(":", 1) for line in passwd.read_text().splitlines())
    assert check_password(before["MA"], entries["MA"])


def test_unsafe_meter_ids_get_no_credentials() -> None:
    found = fleet_credentials(["M1", "M+1", "a/b", "x#", "has space", "c:d", ""], {})
    assert list(found.passwords) == ["M1"]
    assert [u for u, _ in found.refused] == ["M+1", "a/b", "x#", "has space", "c:d", ""]


def test_our_hash_and_mosquitto_passwd_agree(tmp_path: Path) -> None:
    if not shutil.which("mosquitto_passwd"):
        pytest.skip("mosquitto_passwd is not installed on this machine (apt-get install mosquitto)")
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "M1", "s3cret"], check=True, capture_output=True)
    entry = passwd.read_text().strip().split(":", 1)[1]
    assert check_password("s3cret", entry) and not check_password("s3cres", entry)
    salt = base64.b64decode(entry.split("$")[3])
    assert hash_password("s3cret", salt=salt) == entry  # byte for byte what mosquitto_passwd wrote


@pytest.fixture
def peers(fleet: Any, broker_factory: Any, test_ca: CertFiles) -> Any:
    passwd, secrets = fleet
    plain = read_secrets(secrets)
    broker: SecureBroker = broker_factory(passwd)
    opened: dict[str, Peer] = {}
    for user in ("amiflow-ingest", "amiflow-bridge", "MA", "MB"):
        peer, reason = connect(broker.port, user, plain[user], test_ca.ca)
        assert peer is not None, (user, reason)
        opened[user] = peer
    yield opened, broker, plain
    for peer in opened.values():
        peer.close()


def test_a_meter_publishes_and_reads_only_its_own_topics(peers: Any) -> None:
    opened, _, _ = peers
    ingest, bridge, ma, mb = (opened[u] for u in ("amiflow-ingest", "amiflow-bridge", "MA", "MB"))
    ingest.client.subscribe([("$share/amiflow/ami/v1/+/readings", 1), ("$share/amiflow/ami/v1/+/cmd/result", 1)])
    mb.client.subscribe("ami/v1/MB/cmd", qos=1)
    # MA tries to read B's commands directly and by wildcard, and B's readings
    ma.client.subscribe([("ami/v1/MB/cmd", 1), ("ami/v1/+/cmd", 1), ("ami/v1/MB/readings", 1), ("#", 1)])
    time.sleep(0.5)
    assert ma.publish("ami/v1/MB/readings", b'{"meter": "MB"}') == NOT_AUTHORIZED  # spoofing B's readings
    assert ma.publish("ami/v1/MB/cmd", b'{"action": "disconnect"}') == NOT_AUTHORIZED  # forging B's command
    assert ma.publish("ami/v1/MB/cmd/result", b'{"status": "ok"}') == NOT_AUTHORIZED
    assert ma.publish("ami/v1/MA/cmd", b"{}") == NOT_AUTHORIZED  # not even its own command topic
    assert ma.publish("ami/v1/MA/readings", b'{"meter": "MA"}') == 0
    assert mb.publish("ami/v1/MB/readings", b'{"meter": "MB"}') == 0
    assert mb.publish("ami/v1/MB/cmd/result", b'{"status": "ok"}') == 0
    assert bridge.publish("ami/v1/MB/cmd", b'{"action": "reconnect"}') == 0
    assert wait_for(lambda: len(ingest.received) >= 3 and mb.received, 5)
    time.sleep(0.5)  # anything refused or filtered would have arrived by now
    assert sorted(t for t, _ in ingest.received) == ["ami/v1/MA/readings", "ami/v1/MB/cmd/result", "ami/v1/MB/readings"]
    assert mb.received == [("ami/v1/MB/cmd", b'{"action": "reconnect"}')]  # the bridge's command, not MA's forgery
    assert ma.received == []  # neither B's command, nor B's readings, nor anything by wildcard
    assert ingest.publish("ami/v1/MA/cmd", b"{}") == NOT_AUTHORIZED  # ingest reads; only the bridge commands


def test_tls_is_required_and_checked(peers: Any, tmp_path: Path) -> None:
    _, broker, plain = peers
    stranger = make_ca(tmp_path / "other-ca", "a stranger's CA")
    peer, why = connect(broker.port, "MA", plain["MA"], stranger.ca)
    assert peer is None and "CERTIFICATE_VERIFY_FAILED" in str(why)  # a broker not signed by our CA is not trusted
    with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as raw:  # MQTT without TLS: no CONNACK
        raw.sendall(bytes.fromhex("101000044d5154540502003c00000361626300"))  # CONNECT, MQTT 5, client id "abc"
        raw.settimeout(3)
        try:
            answer = raw.recv(16)
        except (TimeoutError, ConnectionResetError):
            answer = b""
    assert not answer.startswith(b"\x20")  # never a CONNACK


def test_the_ingest_worker_reads_every_meter_over_tls(
    peers: Any, db_url: str, db_conn: psycopg.Connection[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real worker, as amiflow-ingest over mqtts:// with the test CA, stores what MA and MB publish on their own
    topics and nothing of MA's attempt to publish as MB."""
    opened, broker, plain = peers
    monkeypatch.setenv("SSL_CERT_FILE", str(broker.ca.ca))  # the worker trusts the system store: point it at ours
    settings = load_settings(
        mqtt_url=f"mqtts://amiflow-ingest:{plain['amiflow-ingest']}@127.0.0.1:{broker.port}",
        data_dir=tmp_path / "ingest",
        mqtt_client_id=f"ingest-{uuid.uuid4().hex[:6]}",
        ingest_batch_max_latency_s=0.2,
        reading_horizon_days=36500,
    )
    worker = IngestWorker(settings, db_url)
    worker.start()
    try:
        ma, mb = opened["MA"], opened["MB"]
        # until the worker's SUBACK the broker answers 16, "no matching subscribers": send again (stored once)
        assert wait_for(lambda: ma.publish("ami/v1/MA/readings", readings_payload("MA", T0, 4)) == 0, 10)
        assert ma.publish("ami/v1/MB/readings", readings_payload("MB", T0, 4, value=99.0)) == NOT_AUTHORIZED
        assert mb.publish("ami/v1/MB/readings", readings_payload("MB", T0, 2)) == 0
        sql = "SELECT meter, count(*) FROM amiflow.v_readings GROUP BY meter ORDER BY meter"
        assert wait_for(lambda: db_conn.execute(sql).fetchall() == [("MA", 4), ("MB", 2)], 15), db_conn.execute(
            sql
        ).fetchall()
    finally:
        worker.stop()
    assert db_conn.execute("SELECT count(*) FROM amiflow.v_readings WHERE value = 99.0").fetchone() == (0,)
    assert db_conn.execute("SELECT count(*) FROM amiflow.v_quarantine").fetchone() == (0,)
