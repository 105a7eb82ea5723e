"""One MQTT connection of the fleet: a paho client publishing for a range of meters, with an ordered backlog and a
bounded in-flight window (paho-mqtt 2.x cannot track more than 65,535 unacknowledged QoS 1 messages).

The backlog is kept in order while the broker is away and handed to paho after the reconnect; paho's callbacks run
in its network thread, so the counters sit behind one condition that the fleet also waits on.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

__all__ = ["FleetConnection"]

log = logging.getLogger(__name__)


class FleetConnection:
    """Connection ``number`` publishing for meters ``lo..hi-1``.

    ``will`` (topic, payload) is the retained last will (a meter of its own: its offline status); ``subscribe`` a
    topic filter subscribed at QoS 1 on every (re)connect (the commands, on one connection of the fleet).
    """

    def __init__(
        self,
        number: int,
        lo: int,
        hi: int,
        *,
        client_id: str,
        window: int,
        will: tuple[str, bytes] | None = None,
        subscribe: str | None = None,
    ) -> None:
        self.lo, self.hi = lo, hi
        self.backlog: deque[tuple[str, bytes, bool]] = deque()
        self.inflight = 0
        self.lock = threading.Condition()
        self.connected = False
        self.reconnected = False
        self.ever_connected = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"{client_id}-{number}", protocol=mqtt.MQTTv311
        )
        self.client.max_inflight_messages_set(window)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(1, 5)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1, retain=True)
        self._window = window
        self._subscribe = subscribe
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
        if self._subscribe is not None:
            client.subscribe(self._subscribe, qos=1)

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
                if not self.connected or self.inflight >= self._window:
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
