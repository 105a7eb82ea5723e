"""COSEM interface-class helpers (DLMS UA 1000-1 "Blue Book"): date-time, scaler_unit, profiles, disconnect control.

date-time octet-string(12) (Blue Book 4.1.6.1)::

    year u16 (0xFFFF unspecified) | month | day | weekday (1 = Monday, 0xFF) | hour | minute | second |
    hundredths (0xFF) | deviation i16 minutes (0x8000 unspecified) | clock status (bit 7 DST, bit 0 invalid,
    bit 1 doubtful)

The sign of the deviation differs between meter makes, so it is a per-meter setting (:class:`Deviation`):
``blue-book`` reads ``local = UTC - deviation`` (CET = -60, the Blue Book wording most makes follow), ``iso`` reads
``local = UTC + deviation`` (CET = +60). An unspecified deviation (0x8000) is taken as UTC.

Register (class 3) and extended register (4): value in the base unit = ``value * 10 ** scaler`` (:class:`ScalerUnit`).
Profile generic (class 7): attribute 2 ``buffer`` is an array of rows, one structure per capture, one cell per
capture object (attribute 3, :class:`CaptureObject`); a ``null-data`` cell repeats the previous row's cell, and a
null clock is the previous clock plus the capture period (attribute 4). :func:`decode_profile` reads a buffer
straight from its A-XDR bytes into numpy columns (the poller's hot path), bounded like :mod:`.axdr`.
Disconnect control (class 70): :class:`ControlState`, :class:`ControlMode`. Pure code: no I/O, no clock.
"""

from __future__ import annotations

import enum
import math
import struct
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from amiflow.errors import FrameError
from amiflow.types import Obis, parse_obis

from . import axdr
from .xdlms import AccessSelection

__all__ = [
    "CLOCK_OBIS",
    "UNITS",
    "CaptureObject",
    "ControlMode",
    "ControlState",
    "DateTime",
    "Deviation",
    "ProfileColumns",
    "ScalerUnit",
    "decode_profile",
    "parse_capture_objects",
    "parse_range_descriptor",
    "range_descriptor",
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
_DT: Final = struct.Struct(">HBBBBBBBhB")


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
        year, month, day, wd, hour, minute, second, hund, dev, status = _DT.unpack_from(raw)

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

        return _DT.pack(
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


@dataclass(frozen=True, slots=True)
class CaptureObject:
    """One profile column: the captured object's class, logical name, attribute and data index."""

    class_id: int
    obis: Obis
    attribute: int
    data_index: int = 0

    @property
    def is_clock(self) -> bool:
        return self.class_id == 8 and self.attribute == 2

    def to_value(self) -> tuple[Any, ...]:
        return (
            axdr.LongUnsigned(self.class_id),
            self.obis.to_bytes(),
            axdr.Integer(self.attribute),
            axdr.LongUnsigned(self.data_index),
        )


def parse_capture_objects(value: Any) -> tuple[CaptureObject, ...]:
    """Attribute 3 of a profile generic: array of {class_id, logical_name, attribute_index, data_index}."""
    if not isinstance(value, list):
        raise FrameError("capture_objects: expected an array")
    out = []
    for item in value:
        if not isinstance(item, tuple) or len(item) != 4 or not isinstance(item[1], bytes) or len(item[1]) != 6:
            raise FrameError(f"capture_objects: bad entry {axdr.to_json(item)!r}")
        out.append(CaptureObject(int(item[0]), Obis.from_bytes(item[1]), int(item[2]), int(item[3])))
    return tuple(out)


def range_descriptor(
    start: datetime,
    end: datetime,
    *,
    convention: Deviation = Deviation.BLUE_BOOK,
    columns: tuple[CaptureObject, ...] = (),
) -> AccessSelection:
    """Selector 1 (range_descriptor): rows whose clock is in ``start..end`` (inclusive; the client filters
    ``start <``), restricted by the clock (class 8, 0-0:1.0.0, attribute 2); ``columns`` empty = all columns."""
    return AccessSelection(
        1,
        (
            CaptureObject(8, CLOCK_OBIS, 2).to_value(),
            DateTime.from_datetime(start, convention=convention).to_bytes(),
            DateTime.from_datetime(end, convention=convention).to_bytes(),
            [c.to_value() for c in columns],
        ),
    )


def parse_range_descriptor(
    access: AccessSelection, convention: Deviation = Deviation.BLUE_BOOK
) -> tuple[datetime, datetime]:
    """(from, to) of a selector-1 access (the server side); FrameError when it is not a clock range."""
    p = access.parameters
    if access.selector != 1 or not isinstance(p, tuple) or len(p) != 4:
        raise FrameError(f"range_descriptor: selector {access.selector} with {axdr.to_json(p)!r}")
    ends = [v.data if isinstance(v, axdr.Raw) else v for v in p[1:3]]
    if not all(isinstance(v, bytes) for v in ends):
        raise FrameError("range_descriptor: from/to are not date-time values")
    return DateTime.from_bytes(ends[0]).to_datetime(convention), DateTime.from_bytes(ends[1]).to_datetime(convention)


@dataclass(frozen=True, slots=True)
class ProfileColumns:
    """A decoded profile buffer: ``ts`` (rows, epoch s of each row's clock) and ``values`` (rows x columns, float64;
    NaN for cells that are not numbers, and in the clock column)."""

    ts: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]


_NUM: Final = {tag: struct.Struct(cls.fmt) for tag, cls in axdr._INT_TYPES.items()} | {
    axdr.Tag.FLOAT32: struct.Struct(">f"),
    axdr.Tag.FLOAT64: struct.Struct(">d"),
}


def _epoch_day(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to the date (proleptic Gregorian); ValueError for impossible dates."""
    return date(year, month, day).toordinal() - _EPOCH_ORDINAL


_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()


def _clock_cell(raw: bytes, pos: int, sign: int, days: dict[int, int]) -> tuple[int, int] | None:
    """Fast path for an octet-string(12) clock cell: (epoch s, next pos), or None to take the generic path."""
    if pos + 14 > len(raw) or raw[pos + 1] != 12:
        return None
    year, month, day, _wd, hour, minute, second, _h, dev, _st = _DT.unpack_from(raw, pos + 2)
    if year == 0xFFFF or month > 12 or day > 31 or hour > 23 or minute > 59 or (second > 59 and second != 0xFF):
        return None
    key = (year << 9) | (month << 5) | day
    epoch_day = days.get(key)
    if epoch_day is None:
        try:
            epoch_day = days[key] = _epoch_day(year, month, day)
        except ValueError:
            return None
    offset = 0 if dev == -0x8000 else dev * sign * 60
    return epoch_day * 86400 + hour * 3600 + minute * 60 + (0 if second == 0xFF else second) - offset, pos + 14


def decode_profile(
    raw: bytes, clock_col: int, capture_period_s: int, convention: Deviation = Deviation.BLUE_BOOK
) -> ProfileColumns:
    """Decode a profile buffer's A-XDR bytes (array of structures) into columns in one pass.

    Numbers and clocks are read in place without building Python values per cell; other cells (strings, nested
    values) go through the generic decoder and become NaN. FrameError for truncated or inconsistent buffers.
    """
    data = memoryview(raw)
    if not raw or raw[0] != axdr.Tag.ARRAY:
        raise FrameError("profile buffer: expected an array")
    nrows, pos = axdr.decode_length(data, 1)
    if nrows > len(raw) - pos:
        raise FrameError(f"profile buffer: {nrows} rows announced, {len(raw) - pos} bytes left")
    ts: list[int] = []
    flat: list[float] = []
    width = -1
    previous: list[float] = []
    last_ts: int | None = None
    sign = convention.sign
    days: dict[int, int] = {}
    num = _NUM
    for r in range(nrows):
        if pos >= len(raw) or raw[pos] != axdr.Tag.STRUCTURE:
            raise FrameError(f"profile buffer: row {r} is not a structure")
        ncols, pos = axdr.decode_length(data, pos + 1)
        if width < 0:
            if not 0 <= clock_col < ncols or ncols > 256:
                raise FrameError(f"profile buffer: {ncols} columns, clock column {clock_col}")
            width = ncols
            previous = [math.nan] * width
        elif ncols != width:
            raise FrameError(f"profile buffer: row {r} has {ncols} columns, {width} before")
        for c in range(width):
            if pos >= len(raw):
                raise FrameError(f"profile buffer: row {r} truncated")
            tag = raw[pos]
            if c == clock_col:
                if tag == axdr.Tag.NULL:
                    if last_ts is None or capture_period_s <= 0:
                        raise FrameError("profile buffer: a null clock without a previous row or capture period")
                    last_ts += capture_period_s
                    pos += 1
                else:
                    fast = _clock_cell(raw, pos, sign, days) if tag == axdr.Tag.OCTET_STRING else None
                    if fast is not None:
                        last_ts, pos = fast
                    else:
                        last_ts, pos = _slow_clock(data, pos, r, convention)
                ts.append(last_ts)
                flat.append(math.nan)
                continue
            st = num.get(tag)
            if st is not None:
                end = pos + 1 + st.size
                if end > len(raw):
                    raise FrameError(f"profile buffer: row {r} truncated")
                v = float(st.unpack_from(raw, pos + 1)[0])
                pos = end
            elif tag == axdr.Tag.NULL:
                v = previous[c]
                pos += 1
            else:
                cell, pos = axdr.decode_one(data, pos)
                v = float(cell) if isinstance(cell, int | float) else math.nan
            flat.append(v)
            previous[c] = v
    if pos != len(raw):
        raise FrameError(f"profile buffer: {len(raw) - pos} trailing bytes")
    values = np.array(flat, dtype=np.float64).reshape(nrows, max(width, 0)) if width >= 0 else np.empty((0, 0))
    return ProfileColumns(np.array(ts, dtype=np.int64), values)


def _slow_clock(data: memoryview, pos: int, row: int, convention: Deviation) -> tuple[int, int]:
    cell, pos = axdr.decode_one(data, pos)
    if isinstance(cell, axdr.Raw):
        cell = cell.data
    if not isinstance(cell, bytes):
        raise FrameError(f"profile buffer: row {row} clock is not a date-time")
    return int(DateTime.from_bytes(cell).to_datetime(convention).timestamp()), pos
