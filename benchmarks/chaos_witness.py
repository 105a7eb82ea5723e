"""The chaos run's independent witness of what the broker accepted, and the broker's own log of what it dropped.

Mosquitto (2.0.x, checked on 2.0.11 and 2.0.21) does not persist shared subscriptions: after a restart, until the
first ingest worker subscribes again, a reading published by a meter matches no shared subscriber and is
acknowledged and dropped (docs/reliability.md). That loss is the broker's, not amiflow's, and the accounting must
tell the two apart rather than count one as the other:

- :class:`Witness` is a plain paho client (no amiflow code) holding a *plain* QoS 1 subscription in a persistent
  session, which Mosquitto does keep over a restart: it receives every message the broker accepted, in full;
- :func:`dropped_by_broker` reads the broker's debug log: a meter's ``PUBLISH`` received after a broker start and
  before the first ``$share`` subscription of that start was delivered to no worker;
- :func:`account` compares, reading by reading, the witness's messages with the database: everything amiflow got
  must be stored or quarantined; what is missing must lie in a message the broker dropped.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

__all__ = ["Account", "Witness", "account", "dropped_by_broker"]

_RECEIVED = re.compile(r"^\d+: Received PUBLISH from (\S+) \(d\d, q\d, r\d, m\d+, '([^']*)', \.\.\. \((\d+) bytes\)\)$")
_SHARED_SUBSCRIBE = re.compile(r"^\d+: \S+ \d \$share/")
_STARTING = re.compile(r"^\d+: mosquitto version \S+ starting$")


@dataclass
class Witness:
    """A persistent MQTT session on a plain subscription of ``topic``, recording every message it is sent."""

    url_host: str
    port: int
    topic: str
    client_id: str = "chaos-witness"
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _subscribed: threading.Event = field(default_factory=threading.Event)
    _client: mqtt.Client | None = None

    def start(self, timeout_s: float = 30.0) -> Witness:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        client.reconnect_delay_set(1, 2)  # back soon after the broker restarts
        client.on_connect = self._on_connect
        client.on_subscribe = lambda *_a: self._subscribed.set()
        client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600  # the session and its queue outlive the broker's restart
        client.connect_async(self.url_host, self.port, keepalive=10, clean_start=False, properties=props)
        client.loop_start()
        self._client = client
        if not self._subscribed.wait(timeout_s):
            raise RuntimeError(f"the witness did not subscribe to {self.topic} within {timeout_s:.0f} s")
        return self

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure and not flags.session_present:  # a kept session keeps its plain subscription
            client.subscribe(self.topic, qos=1)
        elif not reason.is_failure:
            self._subscribed.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def count(self) -> int:
        with self._lock:
            return len(self.messages)

    def settle(self, quiet_s: float = 2.0, timeout_s: float = 60.0) -> None:
        """Wait until no message has arrived for ``quiet_s`` (the broker has sent the witness its queue)."""
        deadline, last, since = time.monotonic() + timeout_s, -1, time.monotonic()
        while time.monotonic() < deadline:
            n = self.count()
            if n != last:
                last, since = n, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return
            time.sleep(0.1)

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None


def dropped_by_broker(log: Path, publisher_prefix: str) -> list[tuple[str, int]]:
    """(topic, payload bytes) of each message a publisher whose client id starts with ``publisher_prefix`` sent
    after a broker start and before the first shared subscription of that start: no shared subscriber had it."""
    dropped: list[tuple[str, int]] = []
    window = False
    for line in log.read_text(errors="replace").splitlines():
        if _STARTING.match(line):
            window = True
        elif _SHARED_SUBSCRIBE.match(line):
            window = False
        elif window and (m := _RECEIVED.match(line)) and m[1].startswith(publisher_prefix):
            dropped.append((m[2], int(m[3])))
    return dropped


@dataclass(frozen=True)
class Account:
    """The comparison of the witness's messages with the database."""

    witness_messages: int
    witness_valid: int  # distinct readings of the messages whose payload names the topic's meter
    stored: int
    missing: int  # valid readings the broker accepted that the database lacks
    missing_unexplained: int  # ... of them not in a message the broker dropped: amiflow's loss
    invented: int  # stored readings no message carried
    value_mismatches: int
    spoofs: int  # distinct messages naming another meter than their topic's
    spoofs_quarantined: int
    spoofs_missing_unexplained: int
    spoof_readings_dropped: int
    quarantined_unknown: int  # quarantined payloads the broker never carried
    quarantined_readings: int  # readings in the quarantined messages
    dropped_messages: int

    @property
    def broker_dropped(self) -> int:
        """Readings the broker accepted and delivered to no worker (valid ones and spoofed ones)."""
        return self.missing + self.spoof_readings_dropped


def _readings(payload: bytes) -> tuple[str, list[dict[str, Any]]] | None:
    try:
        doc = json.loads(payload)
        return str(doc["meter"]), list(doc["readings"])
    except (ValueError, KeyError, TypeError):
        return None


def _topic_meter(topic: str) -> str:
    return topic.split("/")[-2]


def account(url: str, messages: Iterable[tuple[str, bytes]], dropped: list[tuple[str, int]]) -> Account:
    """Reading by reading: the witness's messages against ``amiflow.readings`` and ``amiflow.quarantine``."""
    messages = list(messages)
    # A message could have been dropped when the broker dropped as many messages of its topic and size as the
    # witness got copies of it (a duplicate that reached a worker is no excuse for a reading missing).
    d_count = Counter(dropped)
    copies = Counter(messages)
    could_drop = {msg: n <= d_count[(msg[0], len(msg[1]))] for msg, n in copies.items()}
    valid: dict[tuple[str, str, str], tuple[float, bool]] = {}  # (meter, obis, ts) -> (Wh, every copy droppable)
    spoofs: dict[bytes, int] = {}  # payload -> its readings
    spoofs_in_dropped: set[bytes] = set()
    for (topic, payload), droppable in could_drop.items():
        parsed = _readings(payload)
        if parsed is None:
            continue
        meter, readings = parsed
        if meter != _topic_meter(topic):
            spoofs[payload] = len(readings)
            if droppable:
                spoofs_in_dropped.add(payload)
            continue
        for r in readings:
            key = (meter, str(r["obis"]), str(r["ts"]))
            value = float(r["value"]) * (1000.0 if r.get("unit") == "kWh" else 1.0)
            valid[key] = (value, droppable and valid.get(key, (0.0, True))[1])
    rows = "".join(f"{m}\t{o}\t{t}\t{v!r}\t{'t' if d else 'f'}\n" for (m, o, t), (v, d) in valid.items())
    with psycopg.connect(url, connect_timeout=10) as conn:
        conn.execute("CREATE TEMP TABLE witness (meter text, obis text, ts timestamptz, value float8, dropped bool)")
        with conn.cursor().copy("COPY witness FROM STDIN") as copy:
            copy.write(rows)
        found = conn.execute(
            "SELECT count(*) FILTER (WHERE r.value IS NULL),"
            " count(*) FILTER (WHERE r.value IS NULL AND NOT w.dropped),"
            " count(*) FILTER (WHERE abs(r.value - w.value) > 1e-6), count(r.value) FROM witness w"
            " LEFT JOIN amiflow.meters m ON m.name = w.meter LEFT JOIN amiflow.channels c ON c.obis = w.obis"
            " LEFT JOIN amiflow.readings r ON r.meter_id = m.id AND r.channel_id = c.id AND r.ts = w.ts"
        ).fetchone()
        assert found is not None
        missing, unexplained, mismatches, matched = (int(x) for x in found)
        stored = _one(conn, "SELECT count(*) FROM amiflow.readings")
        quarantined = {bytes(row[0]) for row in conn.execute("SELECT DISTINCT raw FROM amiflow.quarantine")}
    spoof_missing = [p for p in spoofs if p not in quarantined]
    return Account(
        witness_messages=len(messages),
        witness_valid=len(valid),
        stored=stored,
        missing=missing,
        missing_unexplained=unexplained,
        invented=stored - matched,
        value_mismatches=mismatches,
        spoofs=len(spoofs),
        spoofs_quarantined=sum(1 for p in spoofs if p in quarantined),
        spoofs_missing_unexplained=sum(1 for p in spoof_missing if p not in spoofs_in_dropped),
        spoof_readings_dropped=sum(spoofs[p] for p in spoof_missing if p in spoofs_in_dropped),
        quarantined_unknown=sum(1 for p in quarantined if p not in spoofs),
        quarantined_readings=sum(spoofs.get(p, 0) for p in quarantined),
        dropped_messages=len(dropped),
    )


def _one(conn: psycopg.Connection[Any], sql: str) -> int:
    row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0
