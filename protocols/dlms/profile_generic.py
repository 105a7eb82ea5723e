"""Profile generic (class 7, DLMS UA 1000-1 "Blue Book"): capture objects, range access, the buffer.

Attribute 2 ``buffer`` is an array of rows, one structure per capture, one cell per capture object (attribute 3,
:class:`CaptureObject`); a ``null-data`` cell repeats the previous row's cell, and a null clock is the previous clock
plus the capture period (attribute 4). Selective access by range (selector 1, :func:`range_descriptor`) restricts
the rows by the clock column. :func:`decode_profile` reads a buffer straight from its A-XDR bytes into numpy
columns one cell at a time, bounded like :mod:`.axdr`; :mod:`.profile` adds the vectorised path for uniform rows.
Pure code: no I/O, no clock.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from amiflow.errors import FrameError
from amiflow.types import Obis

from . import axdr
from .cosem import CLOCK_OBIS, DATE_TIME_STRUCT, DateTime, Deviation
from .xdlms import AccessSelection

__all__ = [
    "CaptureObject",
    "ProfileColumns",
    "decode_profile",
    "parse_capture_objects",
    "parse_range_descriptor",
    "range_descriptor",
]


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
    year, month, day, _wd, hour, minute, second, _h, dev, _st = DATE_TIME_STRUCT.unpack_from(raw, pos + 2)
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
