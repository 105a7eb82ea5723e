"""The plausibility window: how far from now a timestamp that enters from outside may lie.

Every timestamp amiflow takes from outside (a reading from a meter, a payment's ``paid_at`` or a balance statement's
``as_of`` from billing, a row of an imported file) must lie in ``[now - past_s, now + future_s]``. Outside it the
value is not data but a wrong clock, a unit mistake or a placeholder (``0001-01-01``, ``9999-12-31``): readings are
quarantined with the reason code (:data:`TOO_OLD`, :data:`FUTURE_TS`), billing input is refused with the reason.
The window is configured per kind of input (README, configuration):

==================================  ========================================  ========================================
input                               past                                      future
==================================  ========================================  ========================================
readings (MQTT ingest)              ``AMIFLOW_READING_HORIZON_DAYS`` (400)    ``AMIFLOW_CLOCK_SKEW_FUTURE_S`` (300)
payments, balance statements        ``AMIFLOW_PLAUSIBLE_PAST_DAYS`` (3650)    ``AMIFLOW_PLAUSIBLE_FUTURE_S`` (3600)
==================================  ========================================  ========================================

Pure: no clock inside (``now`` is an argument) and no I/O. Any aware datetime Python can hold (years 1 to 9999, any
offset) is measured without overflow, so a placeholder date is refused instead of crashing the check.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

__all__ = ["FUTURE_TS", "TOO_OLD", "Window", "epoch_s"]

TOO_OLD = "too_old"
FUTURE_TS = "future_ts"

_EPOCH = datetime(1970, 1, 1)


def epoch_s(at: datetime) -> float:
    """Seconds since 1970-01-01 UTC of the aware datetime ``at``; ValueError when it has no offset.

    Unlike ``at.timestamp()`` this never overflows: the offset is applied after the subtraction.
    """
    offset = at.utcoffset()
    if offset is None:
        raise ValueError(f"{at.isoformat()} has no UTC offset")
    return (at.replace(tzinfo=None) - _EPOCH).total_seconds() - offset.total_seconds()


@dataclass(frozen=True, slots=True)
class Window:
    """Timestamps from outside may lie at most ``past_s`` before and ``future_s`` after now."""

    past_s: int
    future_s: int

    @classmethod
    def from_days(cls, past_days: int, future_s: int) -> Window:
        return cls(past_days * 86400, future_s)

    def outside(self, ts: npt.ArrayLike, now_ts: float) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """(too old, in the future) masks over the epoch-second timestamps ``ts``."""
        t = np.asarray(ts)
        too_old: npt.NDArray[np.bool_] = t < now_ts - self.past_s
        future: npt.NDArray[np.bool_] = t > now_ts + self.future_s
        return too_old, future

    def reason(self, at: datetime, now: datetime) -> str | None:
        """None when the aware ``at`` lies in the window around ``now``, else why not, in words."""
        now_ts = epoch_s(now)
        too_old, future = self.outside(np.array([epoch_s(at)]), now_ts)
        if too_old[0]:
            return f"more than {_span(self.past_s)} before now ({_iso(now)}): outside the plausibility window"
        if future[0]:
            return f"more than {_span(self.future_s)} after now ({_iso(now)}): outside the plausibility window"
        return None


def _span(seconds: int) -> str:
    if seconds and seconds % 86400 == 0:
        return f"{seconds // 86400} days"
    return f"{seconds} s"


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")
