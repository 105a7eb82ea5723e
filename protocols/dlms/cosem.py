"""COSEM object helpers (DLMS UA 1000-1 "Blue Book"): date-time, scaler_unit, units, selective access, profiles.

date-time octet-string(12) (Blue Book 4.1.6.1)::

    year u16 (0xFFFF unspecified) | month | day | weekday (1 = Monday, 0xFF) | hour | minute | second |
    hundredths (0xFF) | deviation i16 minutes (0x8000 unspecified) | clock status (bit 7 DST, bit 0 invalid,
    bit 1 doubtful)

The sign of the deviation differs between meter makes. ``deviation_sign=+1`` (the default) reads it as
``local = UTC + deviation`` (CET = +60); ``-1`` as ``local = UTC - deviation`` (CET = -60, the older Blue Book
wording that several makes follow). An unspecified deviation is taken as UTC.

A register's value in the base unit is ``value * 10 ** scaler`` with the unit from :data:`UNITS`.
A profile generic (class 7) buffer is an array of rows (structures), one column per capture object; a ``null-data``
cell repeats the previous row's value, and a null clock is the previous clock plus the capture period. Pure code.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from amiflow.errors import FrameError
from amiflow.types import Obis, parse_obis

from . import axdr

__all__ = [
    "CLOCK_OBIS",
    "UNITS",
    "CaptureObject",
    "ProfileRows",
    "decode_datetime",
    "decode_profile_rows",
    "encode_datetime",
    "parse_capture_objects",
    "parse_scaler_unit",
    "range_descriptor",
    "unit_name",
]

CLOCK_OBIS: Final = parse_obis("0-0:1.0.0")
STATUS_INVALID: Final = 0x01
STATUS_DOUBTFUL: Final = 0x02
STATUS_DST: Final = 0x80

#: DLMS unit enumeration (Blue Book table "enumerated values for physical units"), the ones meters use.
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
    45: "1/(Wh)",
    46: "1/(varh)",
    47: "1/(VAh)",
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


def encode_datetime(when: datetime, *, deviation_min: int = 0, status: int = 0, deviation_sign: int = 1) -> bytes:
    """12 bytes for an aware ``when``, expressed in local time ``UTC + deviation_min`` (0 = UTC)."""
    if when.tzinfo is None:
        raise ValueError("encode_datetime needs an aware datetime")
    local = when.astimezone(UTC) + timedelta(minutes=deviation_min)
    return _DT.pack(
        local.year,
        local.month,
        local.day,
        local.isoweekday(),
        local.hour,
        local.minute,
        local.second,
        local.microsecond // 10_000,
        deviation_min * deviation_sign,
        status,
    )


@dataclass(frozen=True, slots=True)
class DateTime:
    """A decoded date-time: ``at`` (aware UTC) and the clock ``status`` byte."""

    at: datetime
    status: int

    @property
    def doubtful(self) -> bool:
        return bool(self.status & (STATUS_INVALID | STATUS_DOUBTFUL))


def decode_datetime(raw: bytes, *, deviation_sign: int = 1) -> DateTime:
    """Decode a date-time octet-string; FrameError when it is not 12 bytes or has unspecified date/time fields.

    Some stacks append junk after the 12 bytes (a firmware quirk): only the first 12 are read, when present.
    """
    if len(raw) < 12:
        raise FrameError(f"date-time: {len(raw)} bytes, 12 expected")
    year, month, day, _wd, hour, minute, second, hundredths, deviation, status = _DT.unpack_from(raw)
    if year == 0xFFFF or 0xFF in (month, day, hour, minute) or month > 12:
        raise FrameError(f"date-time {raw[:12].hex()}: unspecified or out-of-range fields")
    try:
        local = datetime(
            year,
            month,
            day,
            hour,
            minute,
            0 if second == 0xFF else second,
            0 if hundredths == 0xFF else hundredths * 10_000,
            tzinfo=UTC,
        )
    except ValueError as exc:
        raise FrameError(f"date-time {raw[:12].hex()}: {exc}") from exc
    offset = 0 if deviation == -0x8000 else deviation * deviation_sign
    return DateTime(local - timedelta(minutes=offset), status)


def parse_scaler_unit(data: Any) -> tuple[int, int]:
    """``(scaler, unit code)`` from a decoded scaler_unit structure {integer, enum}; FrameError otherwise."""
    if not isinstance(data, tuple) or len(data) != 2 or not all(isinstance(v, int) for v in data):
        raise FrameError(f"scaler_unit: expected structure {{integer, enum}}, got {axdr.to_json(data)!r}")
    return int(data[0]), int(data[1])


@dataclass(frozen=True, slots=True)
class CaptureObject:
    """One column of a profile: the captured object's class, logical name, attribute and data index."""

    class_id: int
    obis: Obis
    attribute: int
    data_index: int = 0

    def to_axdr(self) -> tuple[Any, ...]:
        return (
            axdr.LongUnsigned(self.class_id),
            self.obis.to_bytes(),
            axdr.Integer(self.attribute),
            axdr.LongUnsigned(self.data_index),
        )


def parse_capture_objects(data: Any) -> list[CaptureObject]:
    """Decode attribute 3 of a profile generic: array of {class_id, logical_name, attribute_index, data_index}."""
    if not isinstance(data, list):
        raise FrameError("capture_objects: expected an array")
    out = []
    for item in data:
        if not isinstance(item, tuple) or len(item) != 4 or not isinstance(item[1], bytes) or len(item[1]) != 6:
            raise FrameError(f"capture_objects: bad entry {axdr.to_json(item)!r}")
        out.append(CaptureObject(int(item[0]), Obis.from_bytes(item[1]), int(item[2]), int(item[3])))
    return out


def range_descriptor(start: datetime, end: datetime, *, columns: tuple[CaptureObject, ...] = ()) -> Any:
    """Parameters of selector 1 (range_descriptor) restricting by the clock, ``start``..``end`` inclusive."""
    return (
        CaptureObject(8, CLOCK_OBIS, 2).to_axdr(),
        encode_datetime(start),
        encode_datetime(end),
        [c.to_axdr() for c in columns],
    )


@dataclass(frozen=True, slots=True)
class ProfileRows:
    """Decoded profile rows: ``ts`` epoch seconds from the clock column, ``columns`` the other cells in order,
    ``doubtful`` True where the row's clock status flags invalid or doubtful."""

    ts: list[int]
    columns: list[list[Any]]
    doubtful: list[bool]


def decode_profile_rows(
    buffer: Any, *, clock_col: int, capture_period_s: int, deviation_sign: int = 1
) -> ProfileRows:
    """Rows of a decoded buffer (array of structures); null cells repeat the previous row (null clock: + period)."""
    if not isinstance(buffer, list):
        raise FrameError("profile buffer: expected an array of rows")
    ts: list[int] = []
    doubtful: list[bool] = []
    columns: list[list[Any]] | None = None
    previous: list[Any] = []
    last_ts: int | None = None
    for row in buffer:
        if not isinstance(row, tuple) or not row or clock_col >= len(row):
            raise FrameError(f"profile buffer: row {len(ts)} is not a structure with a clock column")
        if columns is None:
            columns = [[] for _ in range(len(row) - 1)]
            previous = [None] * len(row)
        elif len(row) != len(previous):
            raise FrameError(f"profile buffer: row {len(ts)} has {len(row)} columns, {len(previous)} before")
        clock = row[clock_col]
        if clock is None:
            if last_ts is None or capture_period_s <= 0:
                raise FrameError("profile buffer: a null clock without a previous row or capture period")
            last_ts += capture_period_s
            doubtful.append(doubtful[-1])
        elif isinstance(clock, bytes | axdr.Raw):
            decoded = decode_datetime(clock if isinstance(clock, bytes) else clock.data, deviation_sign=deviation_sign)
            last_ts = int(decoded.at.timestamp())
            doubtful.append(decoded.doubtful)
        else:
            raise FrameError(f"profile buffer: clock cell {axdr.to_json(clock)!r} is not a date-time")
        ts.append(last_ts)
        k = 0
        for i, cell in enumerate(row):
            if i == clock_col:
                continue
            value = previous[i] if cell is None else cell
            previous[i] = value
            columns[k].append(value)
            k += 1
    return ProfileRows(ts, columns or [], doubtful)
