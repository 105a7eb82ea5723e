"""A fleet of MQTT smart meters (1 to 100,000 in one process) publishing canonical payloads (``amiflow sim mqtt``).

Each meter publishes, per message of ``per_message`` intervals (CONTRACT.md, "MQTT"):

- ``{prefix}/{meter}/readings`` (QoS 1): ``seq`` (the message's last interval end / interval, so it increases per
  meter and survives a restart), interval energy ``1-0:1.29.0`` (and ``1-0:2.29.0`` for PV meters) in kWh, and the
  registers ``1-0:1.8.0`` (``1-0:2.8.0``) at the message's last interval, consistent with the intervals;
- ``{prefix}/{meter}/events`` (QoS 1): ``power_down``/``power_up`` (short outages, about one per meter per hundred
  days), ``relay_open``/``relay_closed`` (commands, the button press of an armed meter), ``clock_adjusted``;
- ``{prefix}/{meter}/status`` (retained): ``online`` on every (re)connect, ``offline`` on a clean stop; the last will
  ``offline`` when the meter has a connection of its own (``connections`` >= meters; the default up to 100 meters).
  Larger fleets share a few connections, as a data concentrator would, and a connection has one will only.

Meters obey ``{prefix}/{meter}/cmd`` and answer on ``cmd/result``: ``disconnect`` (zero load from the next message,
relay ``disconnected``), ``reconnect`` (``connected``, or ``armed`` for the ``armed_share`` of meters that need a
button press, which their customer gives before the next message), ``read`` and ``sync_clock`` (``ok``).

Delivery: a bounded in-flight window per connection (:mod:`simulators.fleet_connection`; paho-mqtt 2.x cannot track
more than 65,535 unacknowledged QoS 1 messages), each connection's backlog kept in order in memory while the broker
is away and published after the reconnect (meters pause generating when a backlog reaches ``max_backlog``), and at
the end everything is drained before the offline status and a clean disconnect. The payloads come from
:mod:`simulators.fleet_messages` (pure); faults follow :mod:`simulators.faults`;
:class:`~simulators.fleet_config.FleetStats` says exactly what was published and what a correct head-end must store:
``readings_published == readings_expected + readings_duplicate + readings_quarantined``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
import time
from datetime import UTC, datetime

import numpy as np
import paho.mqtt.client as mqtt

from amiflow.errors import ConnectError
from amiflow.uri import parse_mqtt_url
from simulators.faults import parse_faults
from simulators.fleet_config import FleetConfig, FleetStats
from simulators.fleet_connection import FleetConnection
from simulators.fleet_messages import Generated, MessageGenerator
from simulators.load import LoadModel

__all__ = ["MqttFleet", "run_fleet", "run_fleet_async"]

log = logging.getLogger(__name__)

_DEFAULT_PER_METER_CONNECTIONS = 100


class MqttFleet:
    """The fleet: ``run()`` blocks until the simulated days are published (or ``stop()``), returning the stats."""

    def __init__(self, config: FleetConfig, mqtt_url: str) -> None:
        self.config = config
        self._target = parse_mqtt_url(mqtt_url)
        self.stats = FleetStats(meters=config.meters)
        self._model = LoadModel(config.seed, pv_share=config.pv_share, commercial_share=config.commercial_share)
        self._gen = MessageGenerator(config, self._model, parse_faults(config.faults), self.stats)
        self._stop = threading.Event()
        self._commands: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._conns: list[FleetConnection] = []
        self._sim_now = config.start_ts
        self._stop_deadline: float | None = None
        self.ready = threading.Event()
        """Set once every connection is up and the meters listen for commands."""

    # -- naming and small payloads -------------------------------------------------------------------------------

    def topic(self, meter: int, leaf: str) -> str:
        """``{prefix}/{meter name}/{leaf}``."""
        return f"{self.config.prefix}/{self.config.meter_name(meter)}/{leaf}"

    def status_payload(self, meter: int, state: str) -> bytes:
        """The status JSON of a meter at the current simulated time."""
        return json.dumps({"state": state, "ts": _iso(self._sim_now)}, separators=(",", ":")).encode()

    def stop(self) -> None:
        """Ask ``run()`` to finish: stop generating, drain what was generated, go offline (thread-safe)."""
        self._stop.set()

    # -- run ---------------------------------------------------------------------------------------------------

    def run(self) -> FleetStats:
        """Connect, publish the simulated days (paced by ``speed``), drain, go offline, disconnect."""
        began = time.monotonic()
        try:
            self._connect()
            for conn in self._conns:
                for m in range(conn.lo, conn.hi):
                    self._enqueue(m, "status", self.status_payload(m, "online"), retain=True)
                    self.stats.status_messages += 1
            self._produce()
            self._linger()
            self._go_offline()
        finally:
            self._disconnect()
            self.stats.elapsed_s = round(time.monotonic() - began, 3)
            if self.config.stats_path is not None:
                self.config.stats_path.write_text(json.dumps(self.stats.to_dict(), indent=2) + "\n", encoding="utf-8")
        return self.stats

    def _connect(self) -> None:
        cfg, target = self.config, self._target
        count = cfg.connections or (cfg.meters if cfg.meters <= _DEFAULT_PER_METER_CONNECTIONS else 8)
        count = max(1, min(count, cfg.meters))
        bounds = np.linspace(0, cfg.meters, count + 1).astype(int)
        for number in range(count):
            lo, hi = int(bounds[number]), int(bounds[number + 1])
            # a meter of its own: its last will is its offline status
            will = (self.topic(lo, "status"), self.status_payload(lo, "offline")) if hi - lo == 1 else None
            conn = FleetConnection(
                number,
                lo,
                hi,
                client_id=cfg.client_id,
                window=cfg.window,
                will=will,
                subscribe=f"{cfg.prefix}/+/cmd" if number == 0 else None,
            )
            if target.username is not None:
                conn.client.username_pw_set(target.username, target.password)
            if target.tls:
                conn.client.tls_set()
            self._conns.append(conn)
        self._conns[0].client.on_message = self._on_message
        subscribed = threading.Event()
        self._conns[0].client.on_subscribe = lambda *_args: subscribed.set()
        for conn in self._conns:
            conn.client.connect_async(target.host, target.port, keepalive=30)
            conn.client.loop_start()
        deadline = time.monotonic() + 30
        for conn in self._conns:
            if not conn.ever_connected.wait(max(0.0, deadline - time.monotonic())):
                raise ConnectError(f"sim mqtt: broker {target.host}:{target.port} did not accept the connection")
        if not subscribed.wait(max(0.0, deadline - time.monotonic())):
            raise ConnectError(f"sim mqtt: broker {target.host}:{target.port} did not confirm the cmd subscription")
        self.ready.set()
        log.info("fleet of %d meters on %d connection(s) to %s:%d", cfg.meters, count, target.host, target.port)

    def _disconnect(self) -> None:
        for conn in self._conns:
            conn.client.disconnect()
        for conn in self._conns:
            conn.client.loop_stop()

    def _conn_of(self, meter: int) -> FleetConnection:
        per = self.config.meters / len(self._conns)
        i = min(int(meter / per), len(self._conns) - 1)
        while meter < self._conns[i].lo:
            i -= 1
        while meter >= self._conns[i].hi:
            i += 1
        return self._conns[i]

    def _enqueue(self, meter: int, leaf: str, payload: bytes, *, retain: bool = False) -> None:
        self._conn_of(meter).backlog.append((self.topic(meter, leaf), payload, retain))

    def _produce(self) -> None:
        cfg = self.config
        t0 = time.monotonic()
        for step_end_ts, blocks in self._gen.steps(self._stop):
            if cfg.speed > 0:
                self._wait_until(t0 + (step_end_ts - cfg.start_ts) / cfg.speed)
            self._sim_now = step_end_ts
            for out in blocks:
                self._emit(out)
                self._service()
                # the meters pause while the backlog is full (a broker outage): memory stays bounded
                while self._backlog() > cfg.max_backlog and not self._stop.is_set():
                    self._service(wait_s=0.05)
                self.stats.max_backlog = max(self.stats.max_backlog, self._backlog())
        self._emit(self._gen.flush())
        self._drain()

    def _drain(self) -> None:
        """Wait until every message is acknowledged: as long as it takes, or 30 s once ``stop()`` was called."""
        while not all(conn.idle for conn in self._conns):
            if self._stop.is_set():
                self._stop_deadline = self._stop_deadline or time.monotonic() + 30
                if time.monotonic() > self._stop_deadline:
                    unacked = sum(conn.inflight for conn in self._conns)
                    log.warning("sim mqtt: stopping with %d unsent, %d unacknowledged", self._backlog(), unacked)
                    return
            self._service(wait_s=0.05)

    def _emit(self, out: Generated) -> None:
        for meter, leaf, payload in out.messages:
            self._enqueue(meter, leaf, payload)

    def _backlog(self) -> int:
        return sum(len(conn.backlog) for conn in self._conns)

    def _wait_until(self, due: float) -> None:
        while not self._stop.is_set():
            left = due - time.monotonic()
            if left <= 0:
                return
            self._service(wait_s=min(left, 0.05))

    def _service(self, wait_s: float = 0.0) -> None:
        """Pump every connection, answer commands, re-announce online after a reconnect; wait up to ``wait_s``."""
        for conn in self._conns:
            if conn.reconnected:
                conn.reconnected = False
                self.stats.reconnects += 1
                for m in range(conn.hi - 1, conn.lo - 1, -1):
                    conn.backlog.appendleft((self.topic(m, "status"), self.status_payload(m, "online"), True))
                    self.stats.status_messages += 1
            conn.pump()
        if self._handle_commands():
            for conn in self._conns:
                conn.pump()
        if wait_s > 0:
            conn = self._conns[0]
            with conn.lock:
                conn.lock.wait(wait_s)

    # -- commands ----------------------------------------------------------------------------------------------

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        self._commands.put((msg.topic, bytes(msg.payload)))
        wake = self._conns[0].lock
        with wake:
            wake.notify_all()  # answer now, not at the next poll

    def _handle_commands(self) -> int:
        handled = 0
        while True:
            try:
                topic, payload = self._commands.get_nowait()
            except queue.Empty:
                return handled
            handled += 1
            meter = self._meter_of_topic(topic)
            if meter is None:
                continue
            for leaf, body in self._gen.command(meter, payload, self._sim_now):
                self._enqueue(meter, leaf, body)

    def _meter_of_topic(self, topic: str) -> int | None:
        name = topic[len(self.config.prefix) + 1 :].split("/", 1)[0]
        digits = name[len(self.config.meter_prefix) :]
        if not name.startswith(self.config.meter_prefix) or not digits.isdigit():
            return None
        index = int(digits) - 1
        return index if 0 <= index < self.config.meters else None

    def _linger(self) -> None:
        deadline = time.monotonic() + self.config.linger_s
        while time.monotonic() < deadline and not self._stop.is_set():
            self._service(wait_s=0.05)
        self._drain()

    def _go_offline(self) -> None:
        for m in range(self.config.meters):
            self._enqueue(m, "status", self.status_payload(m, "offline"), retain=True)
            self.stats.status_messages += 1
        self._drain()


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_fleet(config: FleetConfig, mqtt_url: str) -> FleetStats:
    """Run a fleet to the end (blocking) and return what it published."""
    return MqttFleet(config, mqtt_url).run()


async def run_fleet_async(config: FleetConfig, mqtt_url: str) -> FleetStats:
    """:func:`run_fleet` in a worker thread; cancelling stops the fleet (drained, offline) before re-raising."""
    fleet = MqttFleet(config, mqtt_url)
    task = asyncio.ensure_future(asyncio.to_thread(fleet.run))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        fleet.stop()
        await asyncio.wait([task])
        raise
