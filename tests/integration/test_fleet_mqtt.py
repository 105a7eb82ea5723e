"""The MQTT fleet simulator through a real broker: the contract, exact stats, commands, and backfill after an outage."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest.testing import TcpProxy
from simulators import FleetConfig, FleetStats, MqttFleet, run_fleet, run_fleet_async

START = datetime(2026, 9, 7, tzinfo=UTC)
OBIS = {"1-0:1.29.0", "1-0:2.29.0", "1-0:1.8.0", "1-0:2.8.0"}


class Subscriber:
    """Everything under ``{prefix}/#`` as (topic leaf, meter, payload, retain), in arrival order."""

    def __init__(self, url: str, prefix: str) -> None:
        parts = urlsplit(url)
        self.prefix = prefix
        self.got: list[tuple[str, str, bytes, bool]] = []
        self.lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:10]}")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_a: ready.set()
        self.client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        self.client.loop_start()
        self.client.subscribe(f"{prefix}/#", qos=1)
        assert ready.wait(10)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        meter, _, leaf = msg.topic[len(self.prefix) + 1 :].partition("/")
        with self.lock:
            self.got.append((leaf, meter, bytes(msg.payload), bool(msg.retain)))

    def of(self, leaf: str, meter: str | None = None) -> list[bytes]:
        with self.lock:
            return [p for lf, m, p, _r in self.got if lf == leaf and (meter is None or m == meter)]

    def wait(self, check: Any, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            assert time.monotonic() < deadline, "timed out waiting for the fleet's messages"
            time.sleep(0.05)

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        self.client.publish(topic, json.dumps(payload), qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscriber(mqtt_url: str, topic_prefix: str) -> Iterator[Subscriber]:
    sub = Subscriber(mqtt_url, topic_prefix)
    yield sub
    sub.close()


def published(stats: FleetStats) -> int:
    return stats.messages + stats.event_messages + stats.status_messages + stats.command_results


def test_payloads_follow_the_contract_and_stats_are_exact(
    mqtt_url: str, topic_prefix: str, subscriber: Subscriber
) -> None:
    config = FleetConfig(
        meters=15, start=START, days=2, per_message=8, faults="all=0.03", seed=7, prefix=topic_prefix,
        client_id=f"fleet-{uuid.uuid4().hex[:8]}", outages_per_day=0.5,
    )  # fmt: skip
    stats = run_fleet(config, mqtt_url)
    subscriber.wait(lambda: len(subscriber.got) >= published(stats))
    time.sleep(0.3)
    assert len(subscriber.got) == published(stats)
    assert len(subscriber.of("readings")) == stats.messages
    assert stats.event_messages > 0 and len(subscriber.of("events")) == stats.event_messages
    seen_keys: set[tuple[str, str, str]] = set()
    count: Counter[str] = Counter()
    for leaf, meter, raw, _retain in subscriber.got:
        if leaf != "readings":
            continue
        try:
            doc = json.loads(raw)
        except ValueError:
            count["bad_messages"] += 1
            continue
        if not isinstance(doc.get("readings"), list) or not isinstance(doc.get("seq"), int) or doc["seq"] <= 0:
            count["bad_messages"] += 1
            continue
        if doc["meter"] != meter:
            count["bad_messages"] += 1
            count["quarantined"] += len(doc["readings"])
            continue
        for r in doc["readings"]:
            assert set(r) == {"obis", "ts", "value", "unit"} and r["unit"] == "kWh" and r["obis"] in OBIS
            assert datetime.fromisoformat(r["ts"].replace("Z", "+00:00")).tzinfo is not None and r["ts"][-1] == "Z"
            if ".29." in r["obis"] and not 0 <= r["value"] < 50_000:
                count["quarantined"] += 1
                continue
            key = (meter, r["obis"], r["ts"])
            count["duplicates" if key in seen_keys else "stored"] += 1
            seen_keys.add(key)
    assert count["stored"] == stats.readings_expected
    assert count["duplicates"] == stats.readings_duplicate
    assert count["quarantined"] == stats.readings_quarantined
    assert count["bad_messages"] == stats.messages_quarantined
    assert stats.readings_published == stats.readings_expected + stats.readings_duplicate + stats.readings_quarantined
    for m in range(15):
        states = [json.loads(p)["state"] for p in subscriber.of("status", config.meter_name(m))]
        assert states[0] == "online" and states[-1] == "offline"


def test_seq_increases_and_registers_follow_the_intervals(
    mqtt_url: str, topic_prefix: str, subscriber: Subscriber
) -> None:
    config = FleetConfig(
        meters=6, start=START, days=1, per_message=6, pv_share=0.5, seed=3, prefix=topic_prefix,
        client_id=f"fleet-{uuid.uuid4().hex[:8]}",
    )  # fmt: skip
    stats = run_fleet(config, mqtt_url)
    subscriber.wait(lambda: len(subscriber.of("readings")) >= stats.messages)
    assert stats.readings_expected == stats.readings_published and stats.faults == {}
    pv_meters = 0
    for m in range(6):
        docs = [json.loads(p) for p in subscriber.of("readings", config.meter_name(m))]
        assert len(docs) == 16
        seqs = [d["seq"] for d in docs]
        assert seqs == sorted(set(seqs))
        has_pv = any(r["obis"] == "1-0:2.29.0" for r in docs[0]["readings"])
        pv_meters += has_pv
        for channel, register in (("1-0:1.29.0", "1-0:1.8.0"), ("1-0:2.29.0", "1-0:2.8.0")):
            if channel == "1-0:2.29.0" and not has_pv:
                continue
            ends = [
                int(datetime.fromisoformat(r["ts"]).timestamp())
                for d in docs
                for r in d["readings"]
                if r["obis"] == channel
            ]
            assert ends == [int(START.timestamp()) + 900 * (i + 1) for i in range(96)]
            regs = [next(r["value"] for r in d["readings"] if r["obis"] == register) for d in docs]
            for i in range(1, 16):
                energy = sum(r["value"] for r in docs[i]["readings"] if r["obis"] == channel)
                assert round((regs[i] - regs[i - 1]) * 1000) == round(energy * 1000)
    assert 0 < pv_meters < 6


def test_disconnect_and_reconnect_commands(mqtt_url: str, topic_prefix: str, subscriber: Subscriber) -> None:
    config = FleetConfig(
        meters=3, start=START, days=2, per_message=1, speed=900 * 16, armed_share=0.0, pv_share=0.0, seed=5,
        prefix=topic_prefix, client_id=f"fleet-{uuid.uuid4().hex[:8]}", linger_s=0.5,
    )  # fmt: skip
    fleet = MqttFleet(config, mqtt_url)
    runner = threading.Thread(target=fleet.run)
    runner.start()
    meter = config.meter_name(1)
    try:
        subscriber.wait(lambda: len(subscriber.of("readings", meter)) >= 2)
        off_id, on_id = str(uuid.uuid4()), str(uuid.uuid4())
        subscriber.publish(f"{topic_prefix}/{meter}/cmd", {"id": off_id, "action": "disconnect", "issued_at": "x"})
        subscriber.wait(lambda: len(subscriber.of("cmd/result", meter)) == 1)
        assert json.loads(subscriber.of("cmd/result", meter)[0]) == {
            "id": off_id,
            "status": "ok",
            "relay": "disconnected",
        }
        after_off = len(subscriber.of("readings", meter))
        subscriber.wait(lambda: len(subscriber.of("readings", meter)) >= after_off + 4)
        subscriber.publish(f"{topic_prefix}/{meter}/cmd", {"id": on_id, "action": "reconnect", "issued_at": "x"})
        subscriber.wait(lambda: len(subscriber.of("cmd/result", meter)) == 2)
        assert json.loads(subscriber.of("cmd/result", meter)[1]) == {"id": on_id, "status": "ok", "relay": "connected"}
        after_on = len(subscriber.of("readings", meter))
        subscriber.wait(lambda: len(subscriber.of("readings", meter)) >= after_on + 4)
    finally:
        fleet.stop()
        runner.join(60)
    docs = [json.loads(p) for p in subscriber.of("readings", meter)]

    def values(doc: dict[str, Any], obis: str) -> float:
        return float(next(r["value"] for r in doc["readings"] if r["obis"] == obis))

    # up to two messages may already be on their way when a command's result is seen (per_message=1, fast speed)
    in_flight = 2
    off = docs[after_off:after_on]
    first_zero = next(i for i, d in enumerate(off) if values(d, "1-0:1.29.0") == 0.0)
    assert first_zero <= in_flight
    off = off[first_zero:]
    assert len(off) >= 4 - in_flight and all(values(d, "1-0:1.29.0") == 0.0 for d in off)
    assert len({values(d, "1-0:1.8.0") for d in off}) == 1
    assert all(values(d, "1-0:1.29.0") > 0 for d in docs[after_on + in_flight :])
    assert values(docs[-1], "1-0:1.8.0") > values(off[-1], "1-0:1.8.0")
    codes = [e["code"] for p in subscriber.of("events", meter) for e in json.loads(p)["events"]]
    assert "relay_open" in codes and "relay_closed" in codes
    other = [json.loads(p) for p in subscriber.of("readings", config.meter_name(0))]
    assert all(values(d, "1-0:1.29.0") > 0 for d in other)  # the other meters are untouched


def test_backlog_is_published_in_order_after_a_broker_outage(
    mqtt_url: str, topic_prefix: str, subscriber: Subscriber
) -> None:
    parts = urlsplit(mqtt_url)
    proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 1883)).start()
    config = FleetConfig(
        meters=4, start=START, days=1, per_message=1, speed=900 * 24, seed=8, prefix=topic_prefix,
        client_id=f"fleet-{uuid.uuid4().hex[:8]}",
    )  # fmt: skip
    fleet = MqttFleet(config, f"mqtt://127.0.0.1:{proxy.port}")
    result: list[FleetStats] = []
    runner = threading.Thread(target=lambda: result.append(fleet.run()))
    runner.start()
    try:
        subscriber.wait(lambda: len(subscriber.of("readings")) >= 8)
        proxy.block()
        time.sleep(1.5)
        proxy.unblock()
        runner.join(60)
    finally:
        fleet.stop()
        runner.join(10)
        proxy.stop()
    stats = result[0]
    assert stats.reconnects >= 1 and stats.max_backlog > 0
    subscriber.wait(lambda: len(set(subscriber.of("readings"))) >= stats.messages)
    by_meter: dict[str, list[int]] = defaultdict(list)
    for raw in subscriber.of("readings"):
        doc = json.loads(raw)
        if doc["seq"] not in by_meter[doc["meter"]]:
            by_meter[doc["meter"]].append(doc["seq"])
    for m in range(4):
        seqs = by_meter[config.meter_name(m)]
        assert len(seqs) == 96 and seqs == sorted(seqs)  # every message, first arrivals in order
    states = [json.loads(p)["state"] for p in subscriber.of("status", config.meter_name(0))]
    # the last will on the cut, online again after the reconnect, offline at the clean end
    text = ",".join(states)
    assert "online,offline,online" in text and text.endswith("offline"), states


async def test_async_variant_and_cancellation(mqtt_url: str, topic_prefix: str, subscriber: Subscriber) -> None:
    config = FleetConfig(
        meters=2, start=START, days=1, per_message=96, prefix=topic_prefix, client_id=f"fleet-{uuid.uuid4().hex[:8]}",
    )  # fmt: skip
    stats = await run_fleet_async(config, mqtt_url)
    assert stats.messages == 2
    slow = FleetConfig(
        meters=2, start=START, days=30, per_message=1, speed=900, prefix=topic_prefix,
        client_id=f"fleet-{uuid.uuid4().hex[:8]}", meter_prefix="S",
    )  # fmt: skip
    task = asyncio.ensure_future(run_fleet_async(slow, mqtt_url))
    await asyncio.sleep(1.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    subscriber.wait(lambda: any(json.loads(p)["state"] == "offline" for p in subscriber.of("status", "S000001")))


async def test_the_head_end_relay_driver_commands_fleet_meters(mqtt_url: str, topic_prefix: str) -> None:
    from amiflow.db.registry import MeterRecord
    from billing_bridge import MqttRelayDriver

    config = FleetConfig(
        meters=40, start=START, days=0.25, per_message=4, prefix=topic_prefix, armed_share=0.5, linger_s=30,
        client_id=f"fleet-{uuid.uuid4().hex[:8]}",
    )  # fmt: skip
    fleet = MqttFleet(config, mqtt_url)
    task = asyncio.ensure_future(asyncio.to_thread(fleet.run))
    try:
        assert await asyncio.to_thread(fleet.ready.wait, 30)
        async with MqttRelayDriver(mqtt_url, prefix=topic_prefix, timeout_s=10) as driver:
            answers = set()
            for m in range(config.meters):
                meter = MeterRecord(name=config.meter_name(m), protocol="mqtt")
                assert await driver.command(meter, "disconnect", uuid.uuid4()) == "disconnected"
                assert await driver.read_state(meter) == "disconnected"
                answers.add(await driver.command(meter, "reconnect", uuid.uuid4()))
            assert answers == {"connected", "armed"}  # armed_share=0.5: both kinds among 40 meters
    finally:
        fleet.stop()
        stats = await task
    assert stats.command_results == 3 * config.meters
