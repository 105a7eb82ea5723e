"""``amiflow sim mqtt``: a fleet of MQTT smart meters (1 to 100,000 in one process) publishing canonical payloads.

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

Delivery: a bounded in-flight window per connection (paho-mqtt 2.x cannot track more than 65,535 unacknowledged
QoS 1 messages), each connection's backlog kept in order in memory while the broker is away and published after the
reconnect (meters pause generating when a backlog reaches ``max_backlog``), and at the end everything is drained
before the offline status and a clean disconnect. Faults follow :mod:`simulators.faults`; :class:`FleetStats` says
exactly what was published and what a correct head-end must store:
``readings_published == readings_expected + readings_duplicate + readings_quarantined``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import queue
import signal
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from amiflow.errors import ConfigError, ConnectError
from amiflow.settings import Settings
from amiflow.uri import parse_mqtt_url
from amiflow_app.command import Command
from simulators._fleet_gen import Generated, MessageGenerator
from simulators.faults import parse_faults
from simulators.load import REFERENCE_TS, LoadModel

__all__ = ["SIM_MQTT", "FleetConfig", "FleetStats", "MqttFleet", "run_fleet", "run_fleet_async"]

log = logging.getLogger(__name__)

_DEFAULT_PER_METER_CONNECTIONS = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetConfig:
    """The options of ``amiflow sim mqtt`` (see ``--help``); ``start`` is an aware datetime on an interval boundary."""

    meters: int
    start: datetime
    days: float = 1.0
    interval_s: int = 900
    speed: float = 0.0
    seed: int = 1
    faults: str = ""
    prefix: str = "ami/v1"
    per_message: int = 96
    meter_prefix: str = "M"
    stats_path: Path | None = None
    pv_share: float = 0.2
    commercial_share: float = 0.2
    armed_share: float = 0.1
    outages_per_day: float = 0.01
    connections: int = 0  # 0 = one per meter up to 100 meters, else 8
    window: int = 1000
    max_backlog: int = 200_000
    linger_s: float = 0.0
    client_id: str = "amiflow-sim"

    def __post_init__(self) -> None:
        if not 1 <= self.meters <= 1_000_000:
            raise ConfigError(f"--meters {self.meters}: must be 1 to 1,000,000")
        if self.start.tzinfo is None:
            raise ConfigError("--start: give an offset or Z (for example 2026-11-01T00:00:00Z)")
        if self.interval_s <= 0 or 86_400 % self.interval_s:
            raise ConfigError(f"--interval {self.interval_s}: must divide a day (900, 300, 3600, ...)")
        if int(self.start.timestamp()) % self.interval_s:
            raise ConfigError(f"--start {self.start.isoformat()}: must be on a {self.interval_s} s interval boundary")
        if int(self.start.timestamp()) < REFERENCE_TS:
            raise ConfigError("--start: must be on or after 2000-01-01")
        if not self.days > 0:
            raise ConfigError(f"--days {self.days}: must be positive")
        if self.speed < 0:
            raise ConfigError(f"--speed {self.speed}: 0 (as fast as possible), 1 (real time) or more")
        if not 1 <= self.per_message <= 35_136:
            raise ConfigError(f"--per-message {self.per_message}: must be 1 to 35136 (a leap year of intervals)")
        if not 1 <= self.window <= 60_000:
            raise ConfigError(f"window {self.window}: must be 1 to 60000 (paho tracks at most 65535 in flight)")
        if not self.prefix or "+" in self.prefix or "#" in self.prefix:
            raise ConfigError(f"--prefix {self.prefix!r}: a topic prefix without wildcards")
        parse_faults(self.faults)  # a wrong spec fails here, naming the bad item

    @property
    def start_ts(self) -> int:
        """``start`` as epoch seconds."""
        return int(self.start.timestamp())

    @property
    def intervals(self) -> int:
        """Number of intervals the run covers."""
        return max(1, round(self.days * 86_400 / self.interval_s))

    def meter_name(self, index: int) -> str:
        """The name of meter ``index`` (0-based): ``M000001`` for 0."""
        return f"{self.meter_prefix}{index + 1:06d}"


@dataclass(slots=True)
class FleetStats:
    """What a run published. Readings count one value each; ``faults`` counts occurrences per fault kind.

    ``readings_expected`` are the distinct valid readings a correct head-end stores; ``readings_duplicate`` the
    readings of re-published (``dup``) messages; ``readings_quarantined`` spikes and spoofed readings. Malformed
    messages carry no countable readings (``readings_lost`` says how many they replaced) and are counted in
    ``messages_quarantined`` with the spoofed ones. ``readings_flagged`` are stored with a flag (rolled-over registers).
    """

    meters: int = 0
    messages: int = 0
    readings_published: int = 0
    readings_expected: int = 0
    readings_duplicate: int = 0
    readings_quarantined: int = 0
    readings_flagged: int = 0
    readings_lost: int = 0
    intervals_gapped: int = 0
    messages_quarantined: int = 0
    event_messages: int = 0
    events: int = 0
    status_messages: int = 0
    command_results: int = 0
    reconnects: int = 0
    max_backlog: int = 0
    first_ts: int = 0
    last_ts: int = 0
    elapsed_s: float = 0.0
    faults: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (what ``--stats FILE`` writes)."""
        return asdict(self)


class _Connection:
    """One paho client publishing for meters ``lo..hi-1``: an ordered backlog and a bounded in-flight window."""

    def __init__(self, fleet: MqttFleet, number: int, lo: int, hi: int) -> None:
        cfg = fleet.config
        self.lo, self.hi = lo, hi
        self.backlog: deque[tuple[str, bytes, bool]] = deque()
        self.inflight = 0
        self.lock = threading.Condition()
        self.connected = False
        self.reconnected = False
        self.ever_connected = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"{cfg.client_id}-{number}", protocol=mqtt.MQTTv311
        )
        self.client.max_inflight_messages_set(cfg.window)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(1, 5)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        if hi - lo == 1:  # a meter of its own: its last will is its offline status
            will = fleet.status_payload(lo, "offline")
            self.client.will_set(fleet.topic(lo, "status"), will, qos=1, retain=True)
        self._fleet = fleet
        self._number = number

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, reason: Any, _p: object = None) -> None:
        if reason.is_failure:
            log.warning("fleet connection %d refused: %s", self._number, reason)
            return
        with self.lock:
            self.reconnected = self.ever_connected.is_set()
            self.connected = True
            self.lock.notify_all()
        self.ever_connected.set()
        if self._number == 0:
            client.subscribe(f"{self._fleet.config.prefix}/+/cmd", qos=1)

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, reason: Any, _p: object = None) -> None:
        with self.lock:
            self.connected = False
        if reason.is_failure:
            log.warning("fleet connection %d lost (%s); buffering until the broker is back", self._number, reason)

    def _on_publish(self, _c: mqtt.Client, _u: object, _mid: int, _r: object, _p: object) -> None:
        with self.lock:
            self.inflight -= 1
            self.lock.notify_all()

    def pump(self) -> None:
        """Hand backlog messages to paho while connected and the window has room (never blocks)."""
        while self.backlog:
            with self.lock:
                if not self.connected or self.inflight >= self._fleet.config.window:
                    return
                self.inflight += 1
            topic, payload, retain = self.backlog.popleft()
            # paho keeps a QoS 1 message it could not send and resends it after the reconnect, in order
            self.client.publish(topic, payload, qos=1, retain=retain)

    @property
    def idle(self) -> bool:
        """True when nothing is waiting or unacknowledged."""
        with self.lock:
            return not self.backlog and self.inflight == 0


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
        self._conns: list[_Connection] = []
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
            conn = _Connection(self, number, int(bounds[number]), int(bounds[number + 1]))
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

    def _conn_of(self, meter: int) -> _Connection:
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


# -- CLI ------------------------------------------------------------------------------------------------------------


def _parse_start(text: str) -> datetime:
    try:
        start = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--start {text!r}: expected ISO 8601 such as 2026-11-01T00:00:00Z") from None
    if start.tzinfo is None:
        raise ConfigError(f"--start {text!r}: give an offset or Z (for example 2026-11-01T00:00:00Z)")
    return start.astimezone(UTC)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--meters", type=int, required=True, help="number of meters (1 to 100,000 in one process)")
    p.add_argument("--start", required=True, help="first interval start, ISO 8601 with offset or Z")
    p.add_argument("--days", type=float, default=1.0, help="simulated days (default 1)")
    p.add_argument("--interval", type=int, default=900, help="interval length in seconds (default 900)")
    p.add_argument(
        "--speed", type=float, default=0.0, help="1 = real time, X = X times faster, 0 = as fast as possible"
    )
    p.add_argument("--seed", type=int, default=1, help="seed of the load model and the faults (default 1)")
    p.add_argument("--faults", default="", help="fault spec, e.g. dup=0.01,gap=0.002,spoof=0.0005 (docs/simulators.md)")
    p.add_argument("--prefix", default="ami/v1", help="topic prefix (default ami/v1)")
    p.add_argument("--per-message", type=int, default=96, help="intervals per message (96 = a day, 1 = one interval)")
    p.add_argument("--meter-prefix", default="M", help="meter name prefix (default M: M000001, M000002, ...)")
    p.add_argument("--stats", type=Path, help="write a JSON of what was published to this file")
    p.add_argument("--pv-share", type=float, default=0.2, help="share of meters with PV export (default 0.2)")
    p.add_argument("--commercial-share", type=float, default=0.2, help="share of commercial meters (default 0.2)")
    p.add_argument("--armed-share", type=float, default=0.1, help="share of meters that reconnect to 'armed'")
    p.add_argument("--connections", type=int, default=0, help="MQTT connections (default: one per meter up to 100)")
    p.add_argument("--window", type=int, default=1000, help="unacknowledged QoS 1 messages per connection")
    p.add_argument("--linger", type=float, default=0.0, help="seconds to keep answering commands after the last day")


def _run(args: argparse.Namespace, settings: Settings) -> int:
    config = FleetConfig(
        meters=args.meters,
        start=_parse_start(args.start),
        days=args.days,
        interval_s=args.interval,
        speed=args.speed,
        seed=args.seed,
        faults=args.faults,
        prefix=args.prefix,
        per_message=args.per_message,
        meter_prefix=args.meter_prefix,
        stats_path=args.stats,
        pv_share=args.pv_share,
        commercial_share=args.commercial_share,
        armed_share=args.armed_share,
        connections=args.connections,
        window=args.window,
        linger_s=args.linger,
    )
    broker = None
    url = settings.mqtt_url
    if url is None:
        from amiflow_app.broker import EmbeddedBroker

        broker = EmbeddedBroker().start()
        url = broker.url
        print(f"embedded broker at {url}", flush=True)
    fleet = MqttFleet(config, url)

    def _on_signal(_signum: int, _frame: FrameType | None) -> None:
        fleet.stop()

    # SIGTERM and Ctrl-C: stop generating, drain, go offline, disconnect cleanly
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        stats = fleet.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if broker is not None:
            broker.stop()
    print(json.dumps(stats.to_dict(), separators=(",", ":")))
    return 0


SIM_MQTT = Command(
    help="a fleet of MQTT meters publishing readings, events and status", add_arguments=_add_arguments, run=_run
)
