"""Fast decoding of profile generic buffers (class 7, attribute 2) whose rows all share one layout, pure.

Most meters send every row of a range read with the same cell types and sizes, for example::

    02 03 | 09 0C <date-time 12> | 06 <u32> | 06 <u32>        (21 bytes per row, every row)

Then the buffer after the array header is a (rows x row-size) byte matrix: every row's tag and length bytes are
compared with the first row's at once, the number columns are read as big-endian numpy views, and the date-time
columns are converted to epoch seconds with vectorised civil-date arithmetic (days from civil, H. Hinnant). Any
other buffer (null-compressed rows, strings, nested values, unspecified date fields) goes to
:func:`protocols.dlms.profile_generic.decode_profile`, which gives the same result one cell at a time.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt

from amiflow.errors import FrameError

from . import axdr
from .cosem import Deviation
from .profile_generic import ProfileColumns, decode_profile

__all__ = ["decode_profile_fast"]

# A-XDR tag -> numpy big-endian dtype of the fixed-size number cells read as columns
_NUMBER_DTYPES: Final = {
    axdr.Tag.DOUBLE_LONG: ">i4",
    axdr.Tag.DOUBLE_LONG_UNSIGNED: ">u4",
    axdr.Tag.INTEGER: "i1",
    axdr.Tag.LONG: ">i2",
    axdr.Tag.UNSIGNED: "u1",
    axdr.Tag.LONG_UNSIGNED: ">u2",
    axdr.Tag.LONG64: ">i8",
    axdr.Tag.LONG64_UNSIGNED: ">u8",
    axdr.Tag.ENUM: "u1",
    axdr.Tag.FLOAT32: ">f4",
    axdr.Tag.FLOAT64: ">f8",
}
_DATE_TIME: Final = "date-time"


def decode_profile_fast(
    raw: bytes, clock_col: int, capture_period_s: int, convention: Deviation = Deviation.BLUE_BOOK
) -> ProfileColumns:
    """Same contract as :func:`~protocols.dlms.profile_generic.decode_profile`, vectorised when the rows are uniform."""
    fast = _uniform(raw, clock_col, convention)
    return fast if fast is not None else decode_profile(raw, clock_col, capture_period_s, convention)


def _layout(raw: bytes, pos: int) -> tuple[list[tuple[str, int, int]], int] | None:
    """[(dtype or 'date-time', tag offset, value offset)] and the size of the row at ``pos``, or None."""
    if raw[pos] != axdr.Tag.STRUCTURE or raw[pos + 1] >= 0x80:
        return None
    cells, off = [], pos + 2
    for _ in range(raw[pos + 1]):
        tag = raw[off]
        dtype = _NUMBER_DTYPES.get(tag)
        if dtype is not None:
            cells.append((dtype, off - pos, off + 1 - pos))
            off += 1 + np.dtype(dtype).itemsize
        elif tag == axdr.Tag.OCTET_STRING and raw[off + 1] == 12:
            cells.append((_DATE_TIME, off - pos, off + 2 - pos))
            off += 14
        else:
            return None
    return cells, off - pos


def _uniform(raw: bytes, clock_col: int, convention: Deviation) -> ProfileColumns | None:
    try:
        if not raw or raw[0] != axdr.Tag.ARRAY:
            return None
        nrows, pos = axdr.decode_length(raw, 1)
        if nrows == 0:
            return None
        found = _layout(raw, pos)
    except (FrameError, IndexError):
        return None
    if found is None:
        return None
    cells, size = found
    if len(raw) - pos != nrows * size or not 0 <= clock_col < len(cells) or cells[clock_col][0] != _DATE_TIME:
        return None
    grid = np.frombuffer(raw, dtype=np.uint8, offset=pos).reshape(nrows, size)
    fixed = [0, 1, *(t for _, t, _ in cells), *(t + 1 for k, t, _ in cells if k == _DATE_TIME)]
    if not (grid[:, fixed] == grid[0, fixed]).all():  # every row repeats the first row's type and length bytes
        return None
    ts = _epoch_seconds(grid[:, cells[clock_col][2] : cells[clock_col][2] + 12], convention)
    if ts is None:
        return None
    values = np.full((nrows, len(cells)), np.nan)
    for c, (kind, _, voff) in enumerate(cells):
        if kind != _DATE_TIME:
            width = np.dtype(kind).itemsize
            values[:, c] = np.ascontiguousarray(grid[:, voff : voff + width]).view(kind)[:, 0]
    return ProfileColumns(ts, values)


def _epoch_seconds(dt: npt.NDArray[np.uint8], convention: Deviation) -> npt.NDArray[np.int64] | None:
    """12-byte date-times (rows) -> epoch seconds; None when any date or time field is unspecified or impossible."""
    col: list[npt.NDArray[np.int64]] = [dt[:, i].astype(np.int64) for i in range(12)]
    year = col[0] << 8 | col[1]
    month, day, hour, minute = col[2], col[3], col[5], col[6]
    second = np.where(col[7] == 0xFF, 0, col[7])
    deviation = (col[9] << 8 | col[10]).astype(np.uint16).view(np.int16).astype(np.int64)
    bad = (year == 0xFFFF) | (month < 1) | (month > 12) | (day < 1) | (day > _days_in_month(year, month))
    bad |= (hour > 23) | (minute > 59) | (second > 59)
    if bad.any():
        return None
    y = year - (month <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    local = days * 86400 + hour * 3600 + minute * 60 + second  # hundredths: below the 1 s resolution
    offset = np.where(deviation == -0x8000, 0, deviation * convention.sign * 60)
    ts: npt.NDArray[np.int64] = local - offset
    return ts


def _days_in_month(year: npt.NDArray[np.int64], month: npt.NDArray[np.int64]) -> npt.NDArray[Any]:
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    table = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
    days: npt.NDArray[Any] = table[np.clip(month, 0, 12)] + (leap & (month == 2))
    return days
