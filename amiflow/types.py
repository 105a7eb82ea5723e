"""Shared value types: columnar reading batches, quality flags, sources, issue records, OBIS codes and units.

Readings move as columnar numpy batches, never one object per reading (ARCHITECTURE.md). Values are stored in the
channel's base unit: Wh for active energy, varh for reactive energy, W, var, V, A, Hz.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "BASE_UNITS",
    "ChannelKind",
    "Issue",
    "Obis",
    "QualityFlag",
    "ReadingBatch",
    "Source",
    "channel_kind",
    "normalize_unit",
    "parse_obis",
]


class QualityFlag(enum.IntFlag):
    """Quality bits of a stored reading (``readings.quality``); names are stable, shown in ``v_readings``."""

    ESTIMATED = 1 << 0  # value produced by VEE estimation
    EDITED = 1 << 1  # value changed by an operator or VEE edit
    SUSPECT = 1 << 2  # failed a validation rule but kept
    SPIKE = 1 << 3
    NEGATIVE = 1 << 4
    CLOCK_SKEW = 1 << 5  # meter clock outside tolerance when read
    NON_MONOTONIC = 1 << 6  # cumulative register went backwards
    IMPLAUSIBLE = 1 << 7  # beyond the channel's plausibility bound
    OUTAGE = 1 << 8  # covered by a power-down event
    UNVERIFIED_METER = 1 << 9  # meter auto-registered, not commissioned
    BACKFILLED = 1 << 10  # read late from the meter's profile after an outage
    ROLLOVER = 1 << 11  # register rolled over
    DUPLICATE_SOURCE = 1 << 12  # the same interval arrived from two sources


class Source(enum.IntEnum):
    """Where a reading came from (``readings.source``)."""

    MQTT = 1
    DLMS = 2
    IEC62056_21 = 3
    MODBUS = 4
    P1 = 5
    TASMOTA = 6
    ESTIMATE = 7
    MANUAL = 8
    IMPORT = 9
    SML = 10
    MBUS = 11
    WMBUS = 12


class ChannelKind(enum.StrEnum):
    INTERVAL = "interval"
    REGISTER = "register"
    INSTANTANEOUS = "instantaneous"
    OTHER = "other"


_OBIS_RE = re.compile(
    r"^(?:(?P<a>\d{1,3})-(?P<b>\d{1,3}):)?(?P<c>\d{1,3}|[CF])\.(?P<d>\d{1,3})(?:\.(?P<e>\d{1,3}))?(?:[.*&](?P<f>\d{1,3}))?$"
)


@dataclass(frozen=True, slots=True)
class Obis:
    """An OBIS code ``A-B:C.D.E.F`` (IEC 62056-6-1); F=255 means the current billing period."""

    a: int
    b: int
    c: int
    d: int
    e: int
    f: int = 255

    def __str__(self) -> str:
        return f"{self.a}-{self.b}:{self.c}.{self.d}.{self.e}"

    def to_bytes(self) -> bytes:
        return bytes((self.a, self.b, self.c, self.d, self.e, self.f))

    @classmethod
    def from_bytes(cls, raw: bytes) -> Obis:
        if len(raw) != 6:
            raise ValueError(f"an OBIS logical name has 6 bytes, got {len(raw)}")
        return cls(*raw)


def parse_obis(text: str) -> Obis:
    """Parse ``1-0:1.8.0``, ``1-0:1.8.0.255``, ``1.8.0`` (A=1, B=0 assumed) or ``0-0:96.1.0*255``.

    Raises ValueError for anything else.
    """
    m = _OBIS_RE.match(text.strip())
    if not m:
        raise ValueError(f"not an OBIS code: {text!r}")
    c = m["c"]
    cval = 96 if c == "C" else 97 if c == "F" else int(c)
    parts = (
        int(m["a"]) if m["a"] else 1,
        int(m["b"]) if m["b"] else 0,
        cval,
        int(m["d"]),
        int(m["e"]) if m["e"] else 0,
        int(m["f"]) if m["f"] else 255,
    )
    if any(p > 255 for p in parts):
        raise ValueError(f"OBIS group out of range 0..255: {text!r}")
    return Obis(*parts)


def channel_kind(obis: Obis) -> ChannelKind:
    """Interval (x.29.x), cumulative register (x.8.x), instantaneous (x.7.x), or other."""
    if obis.a in (1, 7, 8) and obis.d == 29:
        return ChannelKind.INTERVAL
    if obis.d == 8:
        return ChannelKind.REGISTER
    if obis.d == 7:
        return ChannelKind.INSTANTANEOUS
    return ChannelKind.OTHER


# unit as written on the wire -> (base unit, factor to the base unit)
BASE_UNITS: dict[str, tuple[str, float]] = {
    "Wh": ("Wh", 1.0),
    "kWh": ("Wh", 1e3),
    "MWh": ("Wh", 1e6),
    "W": ("W", 1.0),
    "kW": ("W", 1e3),
    "MW": ("W", 1e6),
    "var": ("var", 1.0),
    "kvar": ("var", 1e3),
    "varh": ("varh", 1.0),
    "kvarh": ("varh", 1e3),
    "V": ("V", 1.0),
    "kV": ("V", 1e3),
    "A": ("A", 1.0),
    "Hz": ("Hz", 1.0),
    "VA": ("VA", 1.0),
    "kVA": ("VA", 1e3),
    # heat, water and gas meters (M-Bus, SML, P1 sub-meters)
    "m3": ("m3", 1.0),
    "m3/h": ("m3/h", 1.0),
    "degC": ("degC", 1.0),
    "K": ("K", 1.0),
    "kg": ("kg", 1.0),
    "bar": ("bar", 1.0),
    "s": ("s", 1.0),
    "": ("", 1.0),
}
_UNIT_ALIASES = {u.lower(): u for u in BASE_UNITS}


def normalize_unit(unit: str) -> tuple[str, float]:
    """Return (base unit, factor) for a wire unit, case-insensitively; raises ValueError for unknown units."""
    key = _UNIT_ALIASES.get(unit.strip().lower())
    if key is None:
        raise ValueError(f"unknown unit {unit!r}")
    return BASE_UNITS[key]


@dataclass(frozen=True, slots=True)
class Issue:
    """A problem with input data: a stable ``code``, a human ``detail``, and what it concerns.

    Codecs and validators return these rather than raising; ingest turns them into quarantine records. An issue
    with ``extra["severity"] == "info"`` only says how unusual input was read (its readings are good): it is
    reported, never quarantined.
    """

    code: str
    detail: str
    meter: str | None = None
    raw: bytes | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def informational(self) -> bool:
        return self.extra.get("severity") == "info"


def _empty(dtype: Any) -> npt.NDArray[Any]:
    return np.empty(0, dtype=dtype)


@dataclass(frozen=True, slots=True)
class ReadingBatch:
    """Columnar readings: equal-length arrays, one element per reading.

    ``meter`` and ``obis`` are object arrays of str; ``ts`` int64 epoch seconds (UTC; for interval channels the
    interval END); ``value`` float64 in the channel's base unit; ``quality`` int32 :class:`QualityFlag` bits;
    ``source`` int16 :class:`Source`; ``unit`` object array of base-unit strings.
    """

    meter: npt.NDArray[np.object_] = field(default_factory=lambda: _empty(object))
    obis: npt.NDArray[np.object_] = field(default_factory=lambda: _empty(object))
    ts: npt.NDArray[np.int64] = field(default_factory=lambda: _empty(np.int64))
    value: npt.NDArray[np.float64] = field(default_factory=lambda: _empty(np.float64))
    quality: npt.NDArray[np.int32] = field(default_factory=lambda: _empty(np.int32))
    source: npt.NDArray[np.int16] = field(default_factory=lambda: _empty(np.int16))
    unit: npt.NDArray[np.object_] = field(default_factory=lambda: _empty(object))

    def __post_init__(self) -> None:
        n = len(self.ts)
        for name in ("meter", "obis", "value", "quality", "source", "unit"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"ReadingBatch column {name} has {len(getattr(self, name))} rows, ts has {n}")

    def __len__(self) -> int:
        return len(self.ts)

    @classmethod
    def from_columns(
        cls,
        meter: Any,
        obis: Any,
        ts: Any,
        value: Any,
        *,
        unit: Any,
        quality: Any = 0,
        source: Any = Source.MQTT,
    ) -> ReadingBatch:
        """Build a batch, broadcasting scalar ``quality``/``source``/``unit``/``meter``/``obis``."""
        ts_a = np.asarray(ts, dtype=np.int64)
        n = len(ts_a)

        def col(v: Any, dtype: Any) -> npt.NDArray[Any]:
            if isinstance(v, str | int | float) or np.isscalar(v):
                out = np.empty(n, dtype=dtype)
                out[:] = v
                return out
            return np.asarray(v, dtype=dtype)

        return cls(
            meter=col(meter, object),
            obis=col(obis, object),
            ts=ts_a,
            value=np.asarray(value, dtype=np.float64),
            quality=col(quality, np.int32),
            source=col(source, np.int16),
            unit=col(unit, object),
        )

    def take(self, index: Any) -> ReadingBatch:
        """The rows at ``index`` (a boolean mask or integer indices)."""
        return ReadingBatch(
            meter=self.meter[index],
            obis=self.obis[index],
            ts=self.ts[index],
            value=self.value[index],
            quality=self.quality[index],
            source=self.source[index],
            unit=self.unit[index],
        )

    @staticmethod
    def concat(batches: list[ReadingBatch]) -> ReadingBatch:
        if not batches:
            return ReadingBatch()
        return ReadingBatch(
            **{
                name: np.concatenate([getattr(b, name) for b in batches])
                for name in ("meter", "obis", "ts", "value", "quality", "source", "unit")
            }
        )
