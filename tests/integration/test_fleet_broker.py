"""The embedded broker: both engines carry QoS 1 publish/subscribe between paho clients."""

from __future__ import annotations

import shutil
import threading
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from amiflow.errors import ConfigError, ConnectError
from amiflow_app.broker import EmbeddedBroker


def _roundtrip(port: int, protocol: MQTTProtocolVersion, count: int = 50) -> list[bytes]:
    topic = f"amitest/{uuid.uuid4().hex[:12]}/x"
    got: list[bytes] = []
    done = threading.Event()
    subscribed = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        assert msg.qos == 1
        got.append(bytes(msg.payload))
        if len(got) == count:
            done.set()

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:8]}", protocol=protocol)
    sub.on_message = on_message
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}", protocol=protocol)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    try:
        sub.subscribe(topic, qos=1)
        assert subscribed.wait(10)
        infos = [pub.publish(topic, f"m{i}".encode(), qos=1) for i in range(count)]
        for info in infos:
            info.wait_for_publish(10)
            assert info.is_published()
        assert done.wait(10), f"only {len(got)} of {count} arrived"
    finally:
        pub.disconnect()
        sub.disconnect()
        pub.loop_stop()
        sub.loop_stop()
    return got


def test_amqtt_engine_carries_qos1() -> None:
    with EmbeddedBroker(prefer_mosquitto=False) as broker:
        assert broker.engine == "amqtt" and not broker.mqtt5
        assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
        got = _roundtrip(broker.port, mqtt.MQTTv311)
    assert got == [f"m{i}".encode() for i in range(50)]


@pytest.mark.skipif(shutil.which("mosquitto") is None, reason="no mosquitto binary on PATH")
@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5])
def test_mosquitto_engine_carries_qos1(protocol: MQTTProtocolVersion) -> None:
    with EmbeddedBroker() as broker:
        assert broker.engine == "mosquitto" and broker.mqtt5
        got = _roundtrip(broker.port, protocol)
    assert got == [f"m{i}".encode() for i in range(50)]


def test_stop_releases_the_port_and_url_needs_start() -> None:
    broker = EmbeddedBroker(prefer_mosquitto=False)
    with pytest.raises(ConnectError):
        _ = broker.url
    broker.start()
    port = broker.port
    broker.stop()
    broker.stop()  # idempotent
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # free again


def test_non_loopback_host_is_refused() -> None:
    with pytest.raises(ConfigError, match="loopback"):
        EmbeddedBroker(host="0.0.0.0")


def test_a_taken_port_is_a_clear_error() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        for prefer in (True, False):
            with pytest.raises(ConnectError, match=f"127.0.0.1:{taken}"):
                EmbeddedBroker(port=taken, prefer_mosquitto=prefer).start()
