"""Data field codings of EN 13757-3 annex A: integers (type B), BCD (type A), real (type H), dates and times (types
F, G, I, J) and the variable-length field (LVAR).

All multi-byte fields are sent least significant byte first. Data field (low nibble of the DIF) -> length:
``0`` none, ``1 2 3 4 6 7`` signed integer of 1, 2, 3, 4, 6, 8 bytes, ``5`` 32-bit real, ``9 A B C E`` BCD of
2, 4, 6, 8, 12 digits (1, 2, 3, 4, 6 bytes), ``D`` variable length: the first byte LVAR says
``00-BF`` ASCII text of LVAR bytes (last character first), ``C0-C9`` / ``D0-D9`` positive / negative BCD of
2*(LVAR-C0/D0) digits, ``E0-EF`` binary number of LVAR-E0 bytes, ``F0-F4`` binary number of 4*(LVAR-EC) bytes,
``F5`` 48 and ``F6`` 64 bytes
(numbers longer than 8 bytes, and texts with control characters, are kept as hex text); ``8`` selection for
readout (no data); ``F`` special functions (see records).

BCD: a high nibble ``F`` in the most significant byte means a negative number (libmbus and most meters); any other
nibble above 9 makes the value invalid (meters send ``AAAA`` or ``FFFF`` for "no value").

Dates: type G (16 bit) ``day = b0 & 1F; month = b1 & 0F; year = (b0 & E0) >> 5 | (b1 & F0) >> 1``; type F (32
bit) adds minute (b0 & 3F, b0 bit 7 = invalid) and hour (b1 & 1F, b1 bit 7 = summer time) in front; type I (48 bit)
adds seconds in front; type J (24 bit) is a time of day. Years 0-80 are 2000-2080, 81-99 are 1981-1999.
"""

from __future__ import annotations

import struct
from datetime import date, datetime, time
from typing import Final

__all__ = [
    "DATA_LENGTHS",
    "DataFieldError",
    "decode_bcd",
    "decode_date_g",
    "decode_datetime_f",
    "decode_datetime_i",
    "decode_int",
    "decode_lvar",
    "decode_real",
    "decode_time_j",
    "encode_bcd",
    "encode_date_g",
    "encode_datetime_f",
    "encode_int",
    "lvar_length",
]

#: data field nibble -> byte length (variable length D and special F are handled by the record parser)
DATA_LENGTHS: Final = {0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 5: 4, 6: 6, 7: 8, 8: 0, 9: 1, 10: 2, 11: 3, 12: 4, 14: 6}
BCD_FIELDS: Final = frozenset((9, 10, 11, 12, 14))


class DataFieldError(ValueError):
    """A data field that cannot be decoded (an invalid BCD digit, an impossible date): the record keeps no value."""


def decode_int(raw: bytes) -> int:
    """Signed little-endian two's complement (type B)."""
    return int.from_bytes(raw, "little", signed=True)


def encode_int(value: int, length: int) -> bytes:
    return int(value).to_bytes(length, "little", signed=True)


def decode_bcd(raw: bytes) -> int:
    """Packed BCD, least significant byte first; a leading F nibble means negative; other A-F are invalid."""
    value = 0
    negative = False
    for i, byte in enumerate(reversed(raw)):
        hi, lo = byte >> 4, byte & 0x0F
        if i == 0 and hi == 0x0F:
            negative, hi = True, 0
        if hi > 9 or lo > 9:
            raise DataFieldError(f"BCD {raw[::-1].hex()} holds a digit above 9")
        value = value * 100 + hi * 10 + lo
    return -value if negative else value


def encode_bcd(value: int, length: int) -> bytes:
    """``length`` bytes of BCD, least significant byte first; negative values carry an F in the top nibble."""
    digits = f"{abs(int(value)):0{2 * length}d}"
    if len(digits) > 2 * length or (value < 0 and digits[0] != "0"):
        raise ValueError(f"{value} does not fit {2 * length} BCD digits")
    raw = bytearray(bytes.fromhex(digits)[::-1])
    if value < 0:
        raw[-1] |= 0xF0
    return bytes(raw)


def decode_real(raw: bytes) -> float:
    value: float = struct.unpack("<f", raw)[0]
    return value


def _year(lo: int, hi: int) -> int:
    year = ((lo & 0xE0) >> 5) | ((hi & 0xF0) >> 1)
    return 2000 + year if year <= 80 else 1900 + year


def decode_date_g(raw: bytes) -> date:
    """Type G (16 bit date)."""
    day, month = raw[0] & 0x1F, raw[1] & 0x0F
    try:
        return date(_year(raw[0], raw[1]), month, day)
    except ValueError:
        raise DataFieldError(f"type G date {raw.hex()}: no such day") from None


def encode_date_g(d: date) -> bytes:
    y = d.year % 100
    return bytes(((y & 0x07) << 5 | d.day, (y & 0x78) << 1 | d.month))


def decode_datetime_f(raw: bytes) -> datetime:
    """Type F (32 bit date and time, minutes); bit 7 of the first byte marks the value invalid."""
    if raw[0] & 0x80:
        raise DataFieldError(f"type F time {raw.hex()} is flagged invalid")
    minute, hour = raw[0] & 0x3F, raw[1] & 0x1F
    day, month = raw[2] & 0x1F, raw[3] & 0x0F
    try:
        return datetime(_year(raw[2], raw[3]), month, day, hour, minute)
    except ValueError:
        raise DataFieldError(f"type F time {raw.hex()}: no such time") from None


def encode_datetime_f(t: datetime) -> bytes:
    y = t.year % 100
    return bytes((t.minute, t.hour, (y & 0x07) << 5 | t.day, (y & 0x78) << 1 | t.month))


def decode_datetime_i(raw: bytes) -> datetime:
    """Type I (48 bit date and time with seconds)."""
    if raw[1] & 0x80:
        raise DataFieldError(f"type I time {raw.hex()} is flagged invalid")
    second, minute, hour = raw[0] & 0x3F, raw[1] & 0x3F, raw[2] & 0x1F
    day, month = raw[3] & 0x1F, raw[4] & 0x0F
    try:
        return datetime(_year(raw[3], raw[4]), month, day, hour, minute, second)
    except ValueError:
        raise DataFieldError(f"type I time {raw.hex()}: no such time") from None


def decode_time_j(raw: bytes) -> time:
    """Type J (24 bit time of day)."""
    try:
        return time(raw[2] & 0x1F, raw[1] & 0x3F, raw[0] & 0x3F)
    except ValueError:
        raise DataFieldError(f"type J time {raw.hex()}: no such time") from None


def lvar_length(lvar: int) -> int:
    """The number of data bytes an LVAR byte announces; DataFieldError for the reserved F7-FF."""
    if lvar <= 0xBF:
        return lvar
    if lvar <= 0xCF:
        return lvar - 0xC0
    if lvar <= 0xDF:
        return lvar - 0xD0
    if lvar <= 0xEF:
        return lvar - 0xE0
    if lvar <= 0xF4:
        return 4 * (lvar - 0xEC)
    if lvar == 0xF5:
        return 48
    if lvar == 0xF6:
        return 64
    raise DataFieldError(f"LVAR {lvar:02x} is reserved")


def decode_lvar(lvar: int, raw: bytes) -> str | int:
    """The value of a variable-length field: text (characters sent last first), a BCD or a binary number."""
    if lvar <= 0xBF:
        text = bytes(reversed(raw))
        return text.decode("latin-1") if all(0x20 <= b < 0x7F or b >= 0xA0 for b in text) else text.hex()
    if lvar <= 0xCF:
        return decode_bcd(raw)
    if lvar <= 0xDF:
        return -decode_bcd(raw)
    if len(raw) <= 8:
        return int.from_bytes(raw, "little", signed=False)
    return raw[::-1].hex()
