"""The MQTT ingest worker: subscribe (shared, QoS 1, persistent session), batch, commit, and only then acknowledge.

Threads: paho's network loop puts each PUBLISH on a bounded queue (``on_message`` never acknowledges: the client
runs with ``manual_ack=True``); the store thread decodes, batches by size and time, writes each batch in one
transaction and then sends the PUBACKs of exactly the messages in it. While PostgreSQL is unreachable the batch goes
to the durable spool (fsync'd) instead and is acknowledged after that; the spool is replayed, in order, before new
messages once the database answers again. When the spool is full nothing more is acknowledged: the broker keeps the
messages (its in-flight window - MQTT 5 Receive Maximum - stops further deliveries), and ``/health`` says so. That
store side is :class:`ingest.committer.Committer`; this module holds the MQTT session and the threads.

A PUBACK is only valid on the connection that delivered the message (packet ids restart per connection), so each
message carries its connection's generation and acknowledgements of an older connection are skipped: the broker
redelivers those messages and the store key makes the second write a duplicate, not a double.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from amiflow.errors import AmiflowError, ConfigError
from amiflow.settings import Settings
from amiflow.uri import parse_mqtt_url
from ingest.batch_store import IngestStore
from ingest.batching import BatchBuilder, Message, Prepared
from ingest.committer import Committer
from ingest.metrics import IngestMetrics
from ingest.spool import Spool
from ingest.validate import Bounds
from protocols.mqtt_payloads import topic_filters

__all__ = ["IngestWorker"]

log = logging.getLogger(__name__)

_LINGER_S = 0.02  # close a batch when no message arrived for this long (low latency when the stream is thin)


class IngestWorker:
    """One MQTT ingest worker. ``start()``/``stop()`` run it in a thread; ``run(stop_event)`` blocks until set.

    ``settings`` supplies the client id, share group, batching, validation and spool settings; ``db_url`` the
    database (already migrated, or ``prepare_db`` migrates it on the first connection: a worker started while the
    database is away spools until then); ``prefix`` replaces ``ami/v1`` (tests use their own).
    """

    def __init__(
        self,
        settings: Settings,
        db_url: str,
        *,
        prefix: str = "ami/v1",
        tasmota_prefix: str = "tele",
        mqtt_url: str | None = None,
        metrics: IngestMetrics | None = None,
        prepare_db: Callable[[], None] | None = None,
    ) -> None:
        url = mqtt_url or settings.mqtt_url
        if not url:
            raise ConfigError("AMIFLOW_MQTT_URL is not set: the ingest worker needs a broker (mqtt://host:port)")
        self.settings = settings
        self.target = parse_mqtt_url(url)
        self.prefix = prefix
        self.tasmota_prefix = tasmota_prefix
        self.metrics = metrics or IngestMetrics()
        self.store = IngestStore(
            db_url,
            bounds=Bounds(settings.clock_skew_future_s, settings.reading_horizon_days),
            unknown_meter_policy=settings.unknown_meter_policy,
            prepare=prepare_db,
        )
        # one spool per client id: workers on one host never share one (the spool also locks itself)
        spool_name = "".join(c if c.isalnum() or c in "-_." else "_" for c in settings.mqtt_client_id)
        self.spool = Spool(settings.data_dir / "spool" / spool_name, max_bytes=settings.spool_max_bytes)
        self._queue: queue.Queue[Message] = queue.Queue(maxsize=2 * settings.mqtt_max_inflight)
        self._prepared: queue.Queue[Prepared] = queue.Queue(maxsize=2)
        self._client: mqtt.Client | None = None
        self._gen = 0
        self._draining = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._committer = Committer(
            self.store,
            self.spool,
            self.metrics,
            ack=self._ack,
            stopping=lambda: self._stop.is_set(),
            prefix=prefix,
            tasmota_prefix=tasmota_prefix,
        )
        self.connected = threading.Event()
        self._mqtt5 = True

    # -- lifecycle --------------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Run in a background thread; returns once connected and subscribed (ConfigError if that fails in 15 s)."""
        failed: list[BaseException] = []

        def target() -> None:
            try:
                self.run(self._stop)
            except Exception as exc:  # supervisor: hand the failure to start() instead of a thread traceback
                failed.append(exc)
                self.connected.set()
                if self.metrics.mqtt_connected or not isinstance(exc, AmiflowError):
                    log.exception("ingest worker stopped")

        self._thread = threading.Thread(target=target, name="ingest-mqtt", daemon=True)
        self._thread.start()
        if not self.connected.wait(15) or failed:
            self.stop()
            if failed and isinstance(failed[0], AmiflowError):
                raise failed[0]
            raise ConfigError(f"cannot connect to the MQTT broker at {self.target.host}:{self.target.port}")

    def stop(self, timeout: float = 30.0) -> None:
        """Drain, commit, acknowledge and disconnect (what SIGTERM does)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def run(self, stop_event: threading.Event) -> None:
        """Connect, then store batches until ``stop_event`` is set; then drain and disconnect."""
        self._stop = stop_event
        self.spool.open()
        try:
            self.metrics.spool_bytes = self.spool.pending_bytes
            self._serve(stop_event)
        finally:
            self.store.close()
            self.spool.close()  # release the lock even when connecting failed: a restart must find it free
            self.metrics.mqtt_connected = False

    def _serve(self, stop_event: threading.Event) -> None:
        client = self._connect(mqtt5=True)
        if not self.connected.wait(4):
            # an MQTT 3.1.1-only broker (amqtt, the embedded fallback) refuses or drops a v5 CONNECT: try 3.1.1 with
            # a persistent session and no shared subscription (then only one worker may run)
            client.disconnect()
            client.loop_stop()
            client = self._connect(mqtt5=False)
            if self.connected.wait(4):
                log.warning("the broker speaks MQTT 3.1.1 only: no shared subscription, run a single worker")
            else:
                client.disconnect()
                client.loop_stop()
                client = self._connect(mqtt5=True)  # keep retrying MQTT 5 (paho reconnects with backoff)
        decoder = threading.Thread(target=self._decode_loop, name="ingest-decode", daemon=True)
        decoder.start()
        try:
            while not stop_event.is_set():
                self._step(block_s=0.2)
            self._draining.set()  # on_message now leaves new messages unacknowledged: the broker redelivers them
            while decoder.is_alive() or not self._prepared.empty():
                self._step(block_s=0.05)
            time.sleep(0.05)  # let the network thread flush the last PUBACKs
        finally:
            self._draining.set()
            client.disconnect()
            client.loop_stop()

    # -- MQTT --------------------------------------------------------------------------------------------------------
    def _connect(self, *, mqtt5: bool) -> mqtt.Client:
        s = self.settings
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.mqtt_client_id,
            protocol=mqtt.MQTTv5 if mqtt5 else mqtt.MQTTv311,
            clean_session=None if mqtt5 else False,
            manual_ack=True,
        )
        if self.target.username:
            client.username_pw_set(self.target.username, self.target.password)
        if self.target.tls:
            client.tls_set()
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.reconnect_delay_set(1, 30)
        self._client = client
        self._mqtt5 = mqtt5
        try:
            if mqtt5:
                props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                props.SessionExpiryInterval = s.mqtt_session_expiry_s
                props.ReceiveMaximum = s.mqtt_max_inflight
                client.connect(self.target.host, self.target.port, keepalive=30, clean_start=False, properties=props)
            else:
                client.connect(self.target.host, self.target.port, keepalive=30)
        except OSError as exc:
            raise ConfigError(
                f"cannot connect to the MQTT broker at {self.target.host}:{self.target.port}: {exc}"
            ) from exc
        client.loop_start()
        return client

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.error("MQTT broker refused the connection: %s", reason)
            return
        self._gen += 1
        group = self.settings.mqtt_share_group
        tasmota = [f"{self.tasmota_prefix}/+/SENSOR", f"{self.tasmota_prefix}/+/LWT"]
        filters = [f for f in topic_filters(self.prefix) if not f.startswith("tele/")] + tasmota
        if self._mqtt5 and group:
            client.subscribe([(f"$share/{group}/{f}", SubscribeOptions(qos=1)) for f in filters])
        else:  # MQTT 3.1.1, or one worker without a group: a plain subscription, which Mosquitto keeps over a restart
            client.subscribe([(f, 1) for f in filters])
        self.metrics.mqtt_connected = True
        log.info(
            "connected to MQTT %s:%d as %s (session present: %s)",
            self.target.host,
            self.target.port,
            self.settings.mqtt_client_id,
            flags.session_present,
        )
        self.connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.metrics.mqtt_connected = False
        if not self._stop.is_set():
            log.warning("MQTT connection lost (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self._draining.is_set():
            return  # not acknowledged: redelivered to this session on its next connection
        m = Message(msg.topic, bytes(msg.payload), time.time(), msg.mid, msg.qos, self._gen, time.monotonic())
        while True:  # blocks when full: the network thread stops reading (TCP backpressure)
            try:
                self._queue.put(m, timeout=0.5)
                return
            except queue.Full:
                if self._draining.is_set():
                    return  # shutting down: left unacknowledged, redelivered

    def _ack(self, messages: list[Message]) -> None:
        client, gen = self._client, self._gen
        if client is None:
            return
        n = 0
        for m in messages:
            if m.qos > 0 and m.mid and m.gen == gen:
                client.ack(m.mid, m.qos)
                n += 1
        self.metrics.add(messages_acked=n)

    # -- decoding and storing ---------------------------------------------------------------------------------------
    def _decode_loop(self) -> None:
        """Decode thread: messages -> prepared batches, so decoding overlaps the store thread's database waits."""
        while not (self._draining.is_set() and self._queue.empty()):
            prepared = self._collect(0.1)
            if prepared is not None:
                self._prepared.put(prepared)  # bounded: decoding waits when the database is behind

    def _step(self, block_s: float) -> None:
        if self._committer.replay():
            return
        try:
            prepared = self._prepared.get(timeout=block_s) if block_s > 0 else self._prepared.get_nowait()
        except queue.Empty:
            return
        self.metrics.queue_depth = self._queue.qsize()
        self._committer.handle(prepared)

    def _collect(self, block_s: float) -> Prepared | None:
        s = self.settings
        builder = BatchBuilder(prefix=self.prefix, tasmota_prefix=self.tasmota_prefix)
        try:
            first = self._queue.get(timeout=block_s) if block_s > 0 else self._queue.get_nowait()
        except queue.Empty:
            return None
        builder.add(first)
        deadline = time.monotonic() + s.ingest_batch_max_latency_s
        while builder.readings < s.ingest_batch_max_readings and len(builder) < s.mqtt_max_inflight:
            try:
                builder.add(self._queue.get_nowait())
                continue
            except queue.Empty:
                pass
            left = deadline - time.monotonic()
            if left <= 0 or self._draining.is_set():
                break
            try:
                builder.add(self._queue.get(timeout=min(left, _LINGER_S)))
            except queue.Empty:
                break
        p = builder.take()
        self.metrics.add(messages_received=len(p.messages), readings_received=p.readings)
        return p
