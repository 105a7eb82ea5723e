"""Edge validation of decoded readings: pure array functions, no I/O, no clock (``now_ts`` is an argument).

Rules (reason codes are stable; they name quarantine records and metric labels):

=====================  =======================================================================  ===========
reason                 rule                                                                     outcome
=====================  =======================================================================  ===========
``future_ts``          ``ts`` more than ``clock_skew_future_s`` after ``now_ts``                 quarantined
``too_old``            ``ts`` more than ``reading_horizon_days`` before ``now_ts``               quarantined
``negative_interval``  interval energy (``x.29.x``) below zero                                   quarantined
``implausible``        ``|value|`` beyond the channel's plausibility bound                       quarantined
``non_monotonic``      a cumulative register (``x.8.x``) lower than its predecessor in time      flagged
=====================  =======================================================================  ===========

Flagged readings are stored with :class:`~amiflow.types.QualityFlag` bits (``NON_MONOTONIC``, or ``ROLLOVER`` when
the predecessor sat near a power of ten and the new value near zero: a register wrapping, not a meter going back).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from amiflow.plausibility import FUTURE_TS, TOO_OLD, Window
from amiflow.types import QualityFlag, ReadingBatch

__all__ = ["DEFAULT_BOUNDS", "Bounds", "Verdict", "validate"]

# plausibility bounds by base unit and channel kind (OBIS group D): generous, meant to catch garbage and unit
# mistakes (a kWh value sent as Wh * 1000), not to do VEE's spike detection.
DEFAULT_BOUNDS: dict[str, float] = {
    "interval:Wh": 50e6,  # 50 MWh in one interval: a 200 MW feed for 15 min
    "interval:varh": 50e6,
    "register:Wh": 1e15,
    "register:varh": 1e15,
    "W": 1e9,
    "var": 1e9,
    "VA": 1e9,
    "V": 1e6,
    "A": 1e6,
    "Hz": 1e3,
}


@dataclass(frozen=True, slots=True)
class Bounds:
    """Validation limits, from the settings."""

    clock_skew_future_s: int = 300
    reading_horizon_days: int = 400
    plausible: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_BOUNDS))

    @property
    def window(self) -> Window:
        """The time window readings must lie in (``too_old`` before it, ``future_ts`` after it)."""
        return Window.from_days(self.reading_horizon_days, self.clock_skew_future_s)


@dataclass(frozen=True, slots=True)
class Verdict:
    """``reason`` per row ("" = keep); ``quality`` the rows' flags after validation; ``flagged`` counts by reason."""

    reason: npt.NDArray[np.object_]
    quality: npt.NDArray[np.int32]
    flagged: dict[str, int]

    @property
    def keep(self) -> npt.NDArray[np.bool_]:
        keep: npt.NDArray[np.bool_] = self.reason == ""
        return keep


def _kinds(obis: npt.NDArray[np.object_]) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """(interval, register) masks, one string test per distinct code."""
    interval = np.zeros(len(obis), dtype=bool)
    register = np.zeros(len(obis), dtype=bool)
    for code in set(obis.tolist()):
        rows = obis == code
        d = str(code).split(":")[-1].split(".")
        if len(d) >= 2 and d[1] == "29":
            interval |= rows
        elif len(d) >= 2 and d[1] == "8":
            register |= rows
    return interval, register


def validate(
    batch: ReadingBatch,
    *,
    now_ts: int,
    bounds: Bounds,
    last_register: Mapping[tuple[str, str], tuple[int, float]] | None = None,
) -> Verdict:
    """Check every row of ``batch``; ``last_register`` maps (meter, obis) to the latest stored (ts, value)."""
    n = len(batch)
    reason = np.full(n, "", dtype=object)
    quality = batch.quality.copy()
    if n == 0:
        return Verdict(reason, quality, {})
    interval, register = _kinds(batch.obis)
    ts, value = batch.ts, batch.value

    def mark(mask: npt.NDArray[np.bool_], code: str) -> None:
        reason[mask & (reason == "")] = code

    too_old, future = bounds.window.outside(ts, now_ts)
    mark(future, FUTURE_TS)
    mark(too_old, TOO_OLD)
    mark(interval & (value < 0), "negative_interval")
    limit = np.full(n, np.inf)
    for unit in set(batch.unit.tolist()):
        rows = batch.unit == unit
        for kind, mask in (("interval", interval), ("register", register)):
            bound = bounds.plausible.get(f"{kind}:{unit}")
            if bound is not None:
                limit[rows & mask] = bound
        bound = bounds.plausible.get(str(unit))
        if bound is not None:
            limit[rows & ~interval & ~register] = bound
    mark(np.abs(value) > limit, "implausible")
    flagged: dict[str, int] = {}
    if register.any():
        back, wrap = _monotonic(batch, register & (reason == ""), last_register or {})
        quality[back] |= int(QualityFlag.NON_MONOTONIC)
        quality[wrap] |= int(QualityFlag.ROLLOVER)
        if back.any():
            flagged["non_monotonic"] = int(back.sum())
        if wrap.any():
            flagged["rollover"] = int(wrap.sum())
    return Verdict(reason, quality, flagged)


def _monotonic(
    batch: ReadingBatch,
    rows: npt.NDArray[np.bool_],
    last: Mapping[tuple[str, str], tuple[int, float]],
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """(went back, rolled over) masks over the batch for the register rows ``rows``."""
    idx = np.nonzero(rows)[0]
    keys = np.array([f"{m}\x00{o}" for m, o in zip(batch.meter[idx], batch.obis[idx], strict=True)], dtype=object)
    order = np.lexsort((batch.ts[idx], keys))
    idx, keys = idx[order], keys[order]
    ts, val = batch.ts[idx], batch.value[idx]
    prev = np.full(len(idx), np.nan)
    same = np.zeros(len(idx), dtype=bool)
    same[1:] = keys[1:] == keys[:-1]
    prev[1:] = np.where(same[1:], val[:-1], np.nan)
    for j in np.nonzero(~same)[0].tolist():
        meter, obis = str(keys[j]).split("\x00")
        stored = last.get((meter, obis))
        if stored is not None and stored[0] < ts[j]:
            prev[j] = stored[1]
    with np.errstate(invalid="ignore"):
        back_sorted = val < prev * (1 - 1e-9) - 1e-6
        # a wrap: the predecessor in the top tenth below a power of ten, the new value in the bottom tenth
        decade = np.where(prev > 0, 10.0 ** np.ceil(np.log10(np.maximum(prev, 1.0))), np.inf)
        wrap_sorted = back_sorted & (prev >= 0.9 * decade) & (val <= 0.1 * decade)
    back = np.zeros(len(batch), dtype=bool)
    wrap = np.zeros(len(batch), dtype=bool)
    back[idx[back_sorted & ~wrap_sorted]] = True
    wrap[idx[wrap_sorted]] = True
    return back, wrap
