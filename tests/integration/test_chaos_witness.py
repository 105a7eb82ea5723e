"""The chaos run's witness and broker-log accounting (benchmarks/chaos_witness.py) on a real, private Mosquitto.

A shared subscriber is away while the broker restarts and a meter publishes: the broker keeps no shared
subscription, so it drops that message, while the witness's plain subscription of a persistent session receives it.
The broker's debug log must name exactly that message, and the accounting must call its readings the broker's loss
and every other missing, invented or altered reading amiflow's."""

from __future__ import annotations

import json
import threading
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from benchmarks.chaos_services import Mosquitto
from benchmarks.chaos_witness import Witness, account, dropped_by_broker
from ingest.testing import wait_for

pytestmark = pytest.mark.timeout(120)

TOPIC = "wt/v1/M000001/readings"


def _payload(meter: str, seq: int, stamps: list[str], value: float = 0.25) -> bytes:
    readings = [{"obis": "1-0:1.29.0", "ts": ts, "value": value, "unit": "kWh"} for ts in stamps]
    return json.dumps({"meter": meter, "seq": seq, "readings": readings}).encode()


MSG1 = _payload("M000001", 1, ["2026-11-05T00:15:00Z", "2026-11-05T00:30:00Z"])
MSG2 = _payload("M000001", 2, ["2026-11-05T00:45:00Z", "2026-11-05T01:00:00Z", "2026-11-05T01:15:00Z"])
MSG3 = _payload("M000001", 3, ["2026-11-05T01:30:00Z"])
SPOOF = _payload("M000002", 3, ["2026-11-05T01:30:00Z"])  # another meter's id on M000001's topic


class Shared:
    """A worker-like client on a shared subscription of a persistent session."""

    def __init__(self, port: int) -> None:
        self.port, self.got, self._lock = port, list[bytes](), threading.Lock()
        self.client: mqtt.Client | None = None

    def connect(self) -> None:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="wt-worker", protocol=mqtt.MQTTv5)
        subscribed = threading.Event()
        client.on_connect = lambda c, *_a: c.subscribe("$share/g/wt/v1/+/readings", qos=1)
        client.on_subscribe = lambda *_a: subscribed.set()
        client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        client.connect("127.0.0.1", self.port, clean_start=False, properties=props)
        client.loop_start()
        assert subscribed.wait(10)
        self.client = client

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.got.append(bytes(msg.payload))

    def away(self) -> None:
        assert self.client is not None
        self.client.disconnect()  # the session (expiry 3600 s) stays at the broker
        self.client.loop_stop()


def _publish(port: int, payload: bytes) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="amiflow-sim-0", protocol=mqtt.MQTTv311)
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.publish(TOPIC, payload, qos=1).wait_for_publish(10)  # PUBACKed: the broker took it
    client.disconnect()
    client.loop_stop()


def _store(url: str, payloads: list[bytes]) -> None:
    """What a worker stores of ``payloads`` (kWh in the payload, Wh in the table)."""
    with psycopg.connect(url, autocommit=True) as conn:
        for payload in payloads:
            for r in json.loads(payload)["readings"]:
                conn.execute(
                    "INSERT INTO amiflow.readings (meter_id, channel_id, ts, value, source)"
                    " SELECT m.id, c.id, %s, %s, 1 FROM amiflow.meters m, amiflow.channels c"
                    " WHERE m.name = 'M000001' AND c.obis = %s",
                    (r["ts"], r["value"] * 1000, r["obis"]),
                )


def test_the_broker_log_names_the_dropped_message_and_the_accounting_tells_whose_loss(
    private_broker: Mosquitto, db_url: str
) -> None:
    broker = private_broker
    witness = Witness("127.0.0.1", broker.port, "wt/v1/+/readings", client_id="wt-witness").start()
    worker = Shared(broker.port)
    try:
        worker.connect()
        _publish(broker.port, MSG1)
        assert wait_for(lambda: worker.got == [MSG1] and witness.count() == 1, 10)
        worker.away()
        broker.stop()
        broker.start()
        _publish(broker.port, MSG2)  # before the worker is back: no shared subscription exists
        assert wait_for(lambda: witness.count() == 2, 20), "the witness's plain subscription did not survive"
        worker.connect()
        _publish(broker.port, MSG3)
        _publish(broker.port, SPOOF)
        assert wait_for(lambda: len(worker.got) == 3 and witness.count() == 4, 10)
        assert MSG2 not in worker.got  # Mosquitto dropped it (the reason for the witness)
    finally:
        witness.stop()
        worker.away()
    assert [m for _t, m in witness.messages] == [MSG1, MSG2, MSG3, SPOOF]

    dropped = dropped_by_broker(broker.log, "amiflow-sim-")
    assert dropped == [(TOPIC, len(MSG2))]

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO amiflow.meters (name, protocol) VALUES ('M000001', 'mqtt'), ('M000002', 'mqtt')")
        conn.execute(
            "INSERT INTO amiflow.quarantine (source, reason, meter, raw)"
            " VALUES ('mqtt', 'meter_mismatch', 'M000001', %s)",
            (SPOOF,),
        )
    _store(db_url, [MSG1, MSG3])  # all a worker was sent
    acc = account(db_url, witness.messages, dropped)
    assert (acc.witness_valid, acc.stored, acc.missing, acc.missing_unexplained) == (6, 3, 3, 0)
    assert (acc.broker_dropped, acc.invented, acc.value_mismatches) == (3, 0, 0)
    assert (acc.spoofs, acc.spoofs_quarantined, acc.spoofs_missing_unexplained, acc.quarantined_unknown) == (1, 1, 0, 0)

    with psycopg.connect(db_url, autocommit=True) as conn:  # now amiflow's own faults, each seen as such
        conn.execute("DELETE FROM amiflow.readings WHERE ts = '2026-11-05T00:30:00Z'")  # lost from MSG1
        conn.execute("UPDATE amiflow.readings SET value = 999 WHERE ts = '2026-11-05T01:30:00Z'")  # altered
        conn.execute(
            "INSERT INTO amiflow.readings (meter_id, channel_id, ts, value, source)"
            " SELECT m.id, 1, '2026-11-06T00:00:00Z', 1, 1 FROM amiflow.meters m WHERE m.name = 'M000001'"
        )  # carried by no message
        conn.execute("DELETE FROM amiflow.quarantine")  # the spoofed message, delivered, not quarantined
    acc = account(db_url, witness.messages, dropped)
    assert (acc.missing, acc.missing_unexplained, acc.invented, acc.value_mismatches) == (4, 1, 1, 1)
    assert acc.spoofs_missing_unexplained == 1
