"""The state machine of the disconnect control object (interface class 70, Blue Book 4.5.8), pure.

States (attribute 3 control_state): 0 disconnected, 1 connected, 2 ready_for_reconnection. Transitions::

    a remote_reconnect   disconnected -> ready_for_reconnection     e manual_reconnect  ready -> connected
    b remote_disconnect  ready -> disconnected                      f manual_disconnect connected -> ready
    c remote_disconnect  connected -> disconnected                  g local_disconnect  connected -> ready
    d remote_reconnect   disconnected -> connected                  h local_reconnect   ready -> connected

control_mode (attribute 4) selects the allowed transitions: 0 none (the relay stays connected), 1 b c d e f g,
2 a b c e f g, 3 b c d e g, 4 a b c e g, 5 b c d e f g h, 6 b c d e g h. So in modes 2 and 4 a remote reconnect only
arms the relay and the customer closes it with the button. output_state (attribute 2) is True when connected.
"""

from __future__ import annotations

import enum
from typing import Final

from .cosem import ControlState

__all__ = ["MODE_TRANSITIONS", "Trigger", "disconnect_transition"]


class Trigger(enum.StrEnum):
    REMOTE_DISCONNECT = "remote_disconnect"
    REMOTE_RECONNECT = "remote_reconnect"
    MANUAL_DISCONNECT = "manual_disconnect"
    MANUAL_RECONNECT = "manual_reconnect"
    LOCAL_DISCONNECT = "local_disconnect"
    LOCAL_RECONNECT = "local_reconnect"


_D, _C, _R = ControlState.DISCONNECTED, ControlState.CONNECTED, ControlState.READY_FOR_RECONNECTION
_TRANSITIONS: Final = {
    "a": (Trigger.REMOTE_RECONNECT, _D, _R),
    "b": (Trigger.REMOTE_DISCONNECT, _R, _D),
    "c": (Trigger.REMOTE_DISCONNECT, _C, _D),
    "d": (Trigger.REMOTE_RECONNECT, _D, _C),
    "e": (Trigger.MANUAL_RECONNECT, _R, _C),
    "f": (Trigger.MANUAL_DISCONNECT, _C, _R),
    "g": (Trigger.LOCAL_DISCONNECT, _C, _R),
    "h": (Trigger.LOCAL_RECONNECT, _R, _C),
}
MODE_TRANSITIONS: Final = {0: "", 1: "bcdefg", 2: "abcefg", 3: "bcdeg", 4: "abceg", 5: "bcdefgh", 6: "bcdegh"}


def disconnect_transition(mode: int, state: ControlState, trigger: Trigger) -> ControlState | None:
    """The control_state after ``trigger`` in ``mode``, or None when the mode does not allow it.

    A remote command that finds the relay already where it would put it is accepted without a change (a repeated
    disconnect is idempotent, as is a reconnect of an armed relay in modes 2/4); mode 0 refuses everything.
    """
    allowed = MODE_TRANSITIONS.get(int(mode))
    if allowed is None:
        raise ValueError(f"control_mode {mode} outside 0..6")
    for letter in allowed:
        trig, frm, to = _TRANSITIONS[letter]
        if trig is trigger and frm is state:
            return to
    if allowed and trigger is Trigger.REMOTE_DISCONNECT and state is _D:
        return state
    if allowed and trigger is Trigger.REMOTE_RECONNECT and (state is _C or (state is _R and "a" in allowed)):
        return state
    return None
