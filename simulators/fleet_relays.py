"""The relays of the fleet's meters and the commands that move them (CONTRACT.md, "MQTT", commands).

A relay is ``connected``, ``disconnected`` (by a ``disconnect`` command) or ``armed``: a ``reconnect`` reached a
meter that needs its customer's button press (``armed_share`` of the fleet), which the generator gives before the
meter's next message. An open relay (disconnected or armed) lets no energy through. Pure state: no I/O, no clock.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["ARMED", "CONNECTED", "DISCONNECTED", "FleetRelays"]

CONNECTED, DISCONNECTED, ARMED = 0, 1, 2
_NAMES = {CONNECTED: "connected", DISCONNECTED: "disconnected", ARMED: "armed"}

Event = dict[str, object]


class FleetRelays:
    """One relay per meter, all closed at the start; ``needs_button[m]``: meter ``m`` reconnects to ``armed``."""

    def __init__(self, needs_button: npt.NDArray[np.bool_]) -> None:
        self.needs_button = needs_button
        self.state = np.zeros(needs_button.size, dtype=np.int8)

    def open(self) -> npt.NDArray[np.bool_]:
        """The meters whose relay is not closed: no energy flows through them."""
        off: npt.NDArray[np.bool_] = self.state != CONNECTED
        return off

    def press_buttons(self) -> list[int]:
        """The customers of armed meters press the button: those relays close. Returns the meters, in order."""
        armed: list[int] = np.flatnonzero(self.state == ARMED).tolist()
        self.state[armed] = CONNECTED
        return armed

    def obey(self, m: int, action: object, cmd_id: object, ts_iso: str) -> tuple[Event, list[Event]]:
        """Apply one command to meter ``m``: (the ``cmd/result`` document, the events it causes at ``ts_iso``)."""
        events: list[Event] = []
        status = "ok"
        if action == "disconnect":
            if self.state[m] != DISCONNECTED:
                events.append({"ts": ts_iso, "code": "relay_open", "detail": {"command": cmd_id}})
            self.state[m] = DISCONNECTED
        elif action == "reconnect":
            if self.state[m] == DISCONNECTED and self.needs_button[m]:
                self.state[m] = ARMED
            elif self.state[m] == DISCONNECTED:
                self.state[m] = CONNECTED
                events.append({"ts": ts_iso, "code": "relay_closed", "detail": {"command": cmd_id}})
        elif action == "sync_clock":
            events.append({"ts": ts_iso, "code": "clock_adjusted", "detail": {"offset_s": 0}})
        elif action != "read":
            status = "rejected"
        return {"id": cmd_id, "status": status, "relay": _NAMES[int(self.state[m])]}, events
