"""Fault injection shared by the simulators: a spec string, seeded per-item decisions and the faulty values.

A spec is a comma-separated list of ``kind=rate`` items, each rate a probability in [0, 1]::

    dup=0.01,reorder=0.01,gap=0.002,malformed=0.001,spike=0.0005,drift=0.01,rollover=0.001,spoof=0.0005

``""`` or ``none`` turns every fault off; ``all=RATE`` sets every kind (later items override it).

=============  ============  ===========================================================================================
kind           decided per   what the simulator does
=============  ============  ===========================================================================================
``dup``        message       publishes the same message (same ``seq``, same bytes) a second time
``reorder``    message       holds the message back and publishes it after the meter's next message
``gap``        interval      never sends that interval (registers still go out at the message end)
``malformed``  message       replaces the whole message with a broken payload: truncated JSON, not JSON at all, a JSON
                             object without ``readings``, or ``readings`` that is not a list (its readings are lost)
``spike``      interval      sends an impossible interval value: 999,999.999 kWh in 15 minutes, or a negative energy
``drift``      message       shifts every timestamp of the message by 7 to 293 s either way (a meter clock off its grid)
``rollover``   message       the cumulative import register wraps: it loses its leading digit from this message on,
                             like a register with one digit fewer (later registers stay consistent with intervals)
``spoof``      message       also publishes, on this meter's topic, a copy of the message claiming another meter's id
=============  ============  ===========================================================================================

Decisions are counter-based hashes of (seed, kind, item keys), so the same seed gives the same faults however the
work is split or ordered. Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np
import numpy.typing as npt

from amiflow.errors import ConfigError

__all__ = ["FAULT_KINDS", "SPIKE_KWH", "FaultInjector", "FaultSpec", "parse_faults"]

FAULT_KINDS = ("dup", "reorder", "gap", "malformed", "spike", "drift", "rollover", "spoof")
SPIKE_KWH = 999_999.999  # in one interval: far beyond any plausibility bound (a 4 GW feed for 15 minutes)

_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)
_M1 = _U64(0xBF58476D1CE4E5B9)
_M2 = _U64(0x94D049BB133111EB)
_SALT = {kind: 0x51ED270B27A3C9F1 * (i + 1) & 0xFFFFFFFFFFFFFFFF for i, kind in enumerate((*FAULT_KINDS, "value"))}


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """Rates (probabilities in [0, 1]) of each fault kind; see the module docstring for their meaning."""

    dup: float = 0.0
    reorder: float = 0.0
    gap: float = 0.0
    malformed: float = 0.0
    spike: float = 0.0
    drift: float = 0.0
    rollover: float = 0.0
    spoof: float = 0.0

    @property
    def any(self) -> bool:
        """True when at least one kind has a non-zero rate."""
        return any(getattr(self, f.name) > 0.0 for f in fields(self))

    def __str__(self) -> str:
        items = [f"{f.name}={getattr(self, f.name):g}" for f in fields(self) if getattr(self, f.name) > 0.0]
        return ",".join(items) or "none"


def parse_faults(spec: str | None) -> FaultSpec:
    """Parse ``kind=rate,...``; a wrong item is a ConfigError naming it and the accepted kinds."""
    text = (spec or "").strip()
    if text.lower() in ("", "none"):
        return FaultSpec()
    values: dict[str, float] = {}
    for raw_item in text.split(","):
        item = raw_item.strip()
        if not item:
            continue
        kind, sep, rate_text = item.partition("=")
        kind = kind.strip().lower()
        if not sep:
            raise ConfigError(f"fault spec item {item!r}: expected kind=rate, for example dup=0.01")
        if kind != "all" and kind not in FAULT_KINDS:
            raise ConfigError(f"fault spec item {item!r}: unknown kind {kind!r} (known: all, {', '.join(FAULT_KINDS)})")
        try:
            rate = float(rate_text)
        except ValueError:
            raise ConfigError(f"fault spec item {item!r}: rate {rate_text.strip()!r} is not a number") from None
        if not (math.isfinite(rate) and 0.0 <= rate <= 1.0):
            raise ConfigError(f"fault spec item {item!r}: rate must be a probability between 0 and 1")
        if kind == "all":
            values.update(dict.fromkeys(FAULT_KINDS, rate))
        else:
            values[kind] = rate
    return replace(FaultSpec(), **values)


def _hash(key: int, *parts: npt.ArrayLike) -> npt.NDArray[np.uint64]:
    h = np.asarray(_U64(key), dtype=np.uint64)
    with np.errstate(over="ignore"):  # wrapping uint64 arithmetic is the point (0-d arrays would warn)
        return _chain(h, parts)


def _chain(h: npt.NDArray[np.uint64], parts: tuple[npt.ArrayLike, ...]) -> npt.NDArray[np.uint64]:
    for part in parts:
        h = h + np.asarray(part, dtype=np.int64).astype(np.uint64) * _GOLDEN
        h ^= h >> _U64(30)
        h *= _M1
        h ^= h >> _U64(27)
        h *= _M2
        h ^= h >> _U64(31)
    return h


class FaultInjector:
    """Seeded fault decisions for a :class:`FaultSpec`: ``hits(kind, *keys)`` and the faulty values to use."""

    def __init__(self, spec: FaultSpec, seed: int) -> None:
        self.spec = spec
        self._key = int(_hash(seed & 0x7FFFFFFFFFFFFFFF, 0x5EED)) & 0xFFFFFFFFFFFFFFFF

    def uniform(self, kind: str, *keys: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """A seeded uniform [0, 1) per broadcast element of ``keys`` (for example meter x interval)."""
        if kind not in _SALT:
            raise ConfigError(f"fault kind {kind!r}: unknown (known: {', '.join(FAULT_KINDS)})")
        h = _hash(self._key ^ _SALT[kind], *keys)
        return (h >> _U64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)

    def hits(self, kind: str, *keys: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Whether fault ``kind`` strikes each item (broadcast over ``keys``)."""
        rate = float(getattr(self.spec, kind)) if kind in FAULT_KINDS else -1.0
        if rate < 0.0:
            raise ConfigError(f"fault kind {kind!r}: unknown (known: {', '.join(FAULT_KINDS)})")
        shape = np.broadcast_shapes(*(np.shape(k) for k in keys))
        if rate == 0.0:
            return np.zeros(shape, dtype=bool)
        result: npt.NDArray[np.bool_] = self.uniform(kind, *keys) < rate
        return result

    def spike_kwh(self, *keys: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The impossible value of a spike: +SPIKE_KWH or a negative energy (-0.001 to -99.999 kWh)."""
        u = self.uniform("value", 1, *keys)
        result: npt.NDArray[np.float64] = np.where(u < 0.5, SPIKE_KWH, -np.round(0.001 + (u - 0.5) * 2.0 * 99.998, 3))
        return result

    def drift_s(self, *keys: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """The clock error of a drifted message: 7 to 293 s, either sign (never a whole interval)."""
        u = self.uniform("value", 2, *keys)
        magnitude = 7 + np.floor(np.abs(u - 0.5) * 2.0 * 287.0).astype(np.int64)
        result: npt.NDArray[np.int64] = np.where(u < 0.5, -magnitude, magnitude)
        return result

    @staticmethod
    def rollover_wrap_wh(register_wh: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """What a rollover subtracts from a register: its leading digit's place value (0 for values below 10)."""
        value = np.asarray(register_wh, dtype=np.float64)
        digits = np.floor(np.log10(np.maximum(value, 1.0)))
        lead = np.floor(value / 10.0**digits)
        result: npt.NDArray[np.float64] = np.where(value >= 10.0, lead * 10.0**digits, 0.0)
        return result

    def malform(self, payload: bytes, *keys: npt.ArrayLike) -> bytes:
        """A broken stand-in for ``payload`` (one of four variants, chosen by the seeded keys)."""
        variant = int(self.uniform("value", 3, *keys).reshape(-1)[0] * 4)
        if variant == 0:
            return payload[: max(1, len(payload) // 2)]  # truncated JSON
        if variant == 1:
            return b"\xff\xfe\x00 not json " + payload[:16]
        if variant == 2:
            return b'{"meter": "' + _meter_of(payload) + b'", "seq": 0}'  # no readings
        return b'{"meter": "' + _meter_of(payload) + b'", "seq": 0, "readings": "1-0:1.29.0=0.1"}'


def _meter_of(payload: bytes) -> bytes:
    start = payload.find(b'"meter":"')
    if start < 0:
        return b""
    start += len(b'"meter":"')
    return payload[start : payload.find(b'"', start)]
