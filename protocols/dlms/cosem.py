"""COSEM interface-class helpers (DLMS UA 1000-1 "Blue Book"): date-time, units and scaler_unit, disconnect control.

date-time octet-string(12) (Blue Book 4.1.6.1)::

    year u16 (0xFFFF unspecified) | month | day | weekday (1 = Monday, 0xFF) | hour | minute | second |
    hundredths (0xFF) | deviation i16 minutes (0x8000 unspecified) | clock status (bit 7 DST, bit 0 invalid,
    bit 1 doubtful)

The sign of the deviation differs between meter makes, so it is a per-meter setting (:class:`Deviation`):
``blue-book`` reads ``local = UTC - deviation`` (CET = -60, the Blue Book wording most makes follow), ``iso`` reads
``local = UTC + deviation`` (CET = +60). An unspecified deviation (0x8000) is taken as UTC.

Register (class 3) and extended register (4): value in the base unit = ``value * 10 ** scaler`` (:class:`ScalerUnit`).
Disconnect control (class 70): :class:`ControlState`, :class:`ControlMode`. Profile generic (class 7) is in
:mod:`.profile_generic`. Pure code: no I/O, no clock.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from amiflow.errors import FrameError
from amiflow.types import parse_obis

from . import axdr

__all__ = [
    "CLOCK_OBIS",
    "DATE_TIME_STRUCT",
    "UNITS",
    "ControlMode",
    "ControlState",
    "DateTime",
    "Deviation",
    "ScalerUnit",
    "unit_code",
    "unit_name",
]

CLOCK_OBIS: Final = parse_obis("0-0:1.0.0")
STATUS_INVALID: Final = 0x01
STATUS_DOUBTFUL: Final = 0x02
STATUS_DST: Final = 0x80

#: DLMS unit enumeration (Blue Book, "enumerated values for physical units"): the ones meters use.
UNITS: Final = {
    1: "a",
    2: "mo",
    3: "wk",
    4: "d",
    5: "h",
    6: "min",
    7: "s",
    8: "deg",
    9: "degC",
    23: "Pa",
    27: "W",
    28: "VA",
    29: "var",
    30: "Wh",
    31: "VAh",
    32: "varh",
    33: "A",
    34: "C",
    35: "V",
    44: "Hz",
    254: "other",
    255: "",
}
_UNIT_CODES: Final = {v: k for k, v in UNITS.items()}
DATE_TIME_STRUCT: Final = struct.Struct(">HBBBBBBBhB")  # the date-time octet-string, field by field


def unit_name(code: int) -> str:
    """``"Wh"`` for 30; ``"unit-77"`` for a code this table does not know."""
    return UNITS.get(code, f"unit-{code}")


def unit_code(name: str) -> int:
    """The DLMS enum of a unit name (``"Wh"`` -> 30); ValueError when unknown."""
    try:
        return _UNIT_CODES[name]
    except KeyError:
        raise ValueError(f"no DLMS unit code for {name!r}") from None


class Deviation(enum.Enum):
    """How a make signs the date-time deviation (see the module docstring)."""

    BLUE_BOOK = "blue-book"
    ISO = "iso"

    @property
    def sign(self) -> int:
        """``local = UTC + sign * deviation``."""
        return -1 if self is Deviation.BLUE_BOOK else 1


@dataclass(frozen=True, slots=True)
class DateTime:
    """The fields of a date-time octet-string; ``None`` where unspecified."""

    year: int | None
    month: int | None
    day: int | None
    hour: int | None
    minute: int | None
    second: int | None
    hundredths: int | None = None
    deviation: int | None = 0
    status: int = 0
    weekday: int | None = None

    @classmethod
    def from_bytes(cls, raw: bytes) -> DateTime:
        """Decode; FrameError when shorter than 12 bytes. Bytes after the 12th are ignored (a firmware quirk)."""
        if len(raw) < 12:
            raise FrameError(f"date-time: {len(raw)} bytes, 12 expected")
        year, month, day, wd, hour, minute, second, hund, dev, status = DATE_TIME_STRUCT.unpack_from(raw)

        def opt(v: int) -> int | None:
            return None if v == 0xFF else v

        return cls(
            None if year == 0xFFFF else year,
            opt(month),
            opt(day),
            opt(hour),
            opt(minute),
            opt(second),
            opt(hund),
            None if dev == -0x8000 else dev,
            status,
            opt(wd),
        )

    def to_bytes(self) -> bytes:
        def b(v: int | None) -> int:
            return 0xFF if v is None else v

        return DATE_TIME_STRUCT.pack(
            0xFFFF if self.year is None else self.year,
            b(self.month),
            b(self.day),
            b(self.weekday),
            b(self.hour),
            b(self.minute),
            b(self.second),
            b(self.hundredths),
            -0x8000 if self.deviation is None else self.deviation,
            self.status,
        )

    @classmethod
    def from_datetime(
        cls, when: datetime, *, deviation_min: int = 0, convention: Deviation = Deviation.BLUE_BOOK, status: int = 0
    ) -> DateTime:
        """``when`` (aware) as local time ``UTC + deviation_min`` (0: UTC), the deviation signed per ``convention``."""
        if when.tzinfo is None:
            raise ValueError("DateTime.from_datetime needs an aware datetime")
        local = when.astimezone(UTC) + timedelta(minutes=deviation_min)
        return cls(
            local.year,
            local.month,
            local.day,
            local.hour,
            local.minute,
            local.second,
            local.microsecond // 10_000,
            deviation_min * convention.sign,
            status,
            local.isoweekday(),
        )

    def to_datetime(self, convention: Deviation = Deviation.BLUE_BOOK) -> datetime:
        """The instant (aware, UTC); FrameError when the date or time is unspecified or impossible."""
        if None in (self.year, self.month, self.day, self.hour, self.minute):
            raise FrameError(f"date-time {self.to_bytes().hex()}: date or time unspecified")
        try:
            local = datetime(
                self.year or 0,
                self.month or 0,
                self.day or 0,
                self.hour or 0,
                self.minute or 0,
                self.second or 0,
                (self.hundredths or 0) * 10_000,
                tzinfo=UTC,
            )
        except ValueError as exc:
            raise FrameError(f"date-time {self.to_bytes().hex()}: {exc}") from exc
        return local - timedelta(minutes=(self.deviation or 0) * convention.sign)

    @property
    def doubtful(self) -> bool:
        """The clock status says invalid or doubtful."""
        return bool(self.status & (STATUS_INVALID | STATUS_DOUBTFUL))


@dataclass(frozen=True, slots=True)
class ScalerUnit:
    """A register's scaler_unit (attribute 3): ``value * 10 ** scaler`` in ``unit`` (a DLMS unit code)."""

    scaler: int = 0
    unit: int = 255

    @classmethod
    def from_value(cls, value: Any) -> ScalerUnit:
        """From the decoded structure {integer scaler, enum unit}; FrameError otherwise."""
        if not isinstance(value, tuple) or len(value) != 2 or not all(isinstance(v, int) for v in value):
            raise FrameError(f"scaler_unit: expected structure {{integer, enum}}, got {axdr.to_json(value)!r}")
        if not -128 <= value[0] <= 127:
            raise FrameError(f"scaler_unit: scaler {value[0]} out of range")
        return cls(int(value[0]), int(value[1]))

    def to_value(self) -> tuple[axdr.Integer, axdr.Enum]:
        return (axdr.Integer(self.scaler), axdr.Enum(self.unit))

    def apply(self, value: float) -> float:
        return float(value) * 10.0**self.scaler

    @property
    def unit_text(self) -> str:
        return unit_name(self.unit)


class ControlState(enum.IntEnum):
    """Disconnect control attribute 3."""

    DISCONNECTED = 0
    CONNECTED = 1
    READY_FOR_RECONNECTION = 2


class ControlMode(enum.IntEnum):
    """Disconnect control attribute 4 (Blue Book 4.5.8). In modes 2 and 4 a remote reconnect only arms the relay
    (ready_for_reconnection); the customer closes it with the button. Mode 0 refuses every transition."""

    NONE = 0
    MODE_1 = 1
    MODE_2 = 2
    MODE_3 = 3
    MODE_4 = 4
    MODE_5 = 5
    MODE_6 = 6

    @property
    def reconnect_arms(self) -> bool:
        return self in (ControlMode.MODE_2, ControlMode.MODE_4)
