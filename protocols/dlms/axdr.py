"""A-XDR encoding of COSEM ``Data`` (IEC 62056-6-2 / DLMS UA 1000-2 "Green Book", clause 9.5).

Layout: one tag byte, then the value::

    0  null-data            -
    1  array                compact length n, n elements
    2  structure            compact length n, n elements
    3  boolean              1 byte (0 false, anything else true)
    4  bit-string           compact length in bits, ceil(bits / 8) bytes
    5  double-long          i32 big-endian          6  double-long-unsigned  u32
    9  octet-string         compact length, bytes   10 visible-string       compact length, ASCII
    12 utf8-string          compact length, UTF-8   13 bcd                  1 byte (two digits)
    15 integer              i8                      16 long                 i16
    17 unsigned             u8                      18 long-unsigned        u16
    20 long64               i64                     21 long64-unsigned      u64
    22 enum                 u8                      23 float32              IEEE 754 single
    24 float64              IEEE 754 double         25 date-time 12 bytes, 26 date 5 bytes, 27 time 4 bytes

Compact length (the BER definite form): ``< 0x80`` one byte, else ``0x8N`` followed by N big-endian bytes.

Python values: ``None`` null, ``bool`` boolean, ``bytes`` octet-string, ``str`` visible-string, ``list`` array,
``tuple`` structure; numbers carry their wire type as ``int``/``float`` subclasses (``Unsigned(5)``, ``Float32(1.5)``)
so decoding then encoding gives the same bytes. A plain ``int`` or ``float`` has no wire type and is refused.
Decoding is bounded: nesting depth, element counts (never more than the bytes left) and lengths are checked, and a
truncated or malformed value raises :class:`~amiflow.errors.FrameError` (an APDU is always complete when decoded).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, ClassVar

from amiflow.errors import FrameError

__all__ = [
    "MAX_DEPTH",
    "BitString",
    "Bcd",
    "DoubleLong",
    "DoubleLongUnsigned",
    "Enum",
    "Float32",
    "Float64",
    "Integer",
    "Long",
    "Long64",
    "Long64Unsigned",
    "LongUnsigned",
    "Raw",
    "Tag",
    "Unsigned",
    "Utf8String",
    "decode",
    "decode_length",
    "decode_one",
    "encode",
    "encode_length",
    "to_json",
]

MAX_DEPTH = 16


class Tag:
    """The A-XDR type tags."""

    NULL = 0
    ARRAY = 1
    STRUCTURE = 2
    BOOLEAN = 3
    BIT_STRING = 4
    DOUBLE_LONG = 5
    DOUBLE_LONG_UNSIGNED = 6
    OCTET_STRING = 9
    VISIBLE_STRING = 10
    UTF8_STRING = 12
    BCD = 13
    INTEGER = 15
    LONG = 16
    UNSIGNED = 17
    LONG_UNSIGNED = 18
    LONG64 = 20
    LONG64_UNSIGNED = 21
    ENUM = 22
    FLOAT32 = 23
    FLOAT64 = 24
    DATE_TIME = 25
    DATE = 26
    TIME = 27


class _TypedInt(int):
    tag: ClassVar[int]
    fmt: ClassVar[str]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({int(self)})"


class Integer(_TypedInt):
    tag, fmt = Tag.INTEGER, ">b"


class Long(_TypedInt):
    tag, fmt = Tag.LONG, ">h"


class DoubleLong(_TypedInt):
    tag, fmt = Tag.DOUBLE_LONG, ">i"


class Long64(_TypedInt):
    tag, fmt = Tag.LONG64, ">q"


class Unsigned(_TypedInt):
    tag, fmt = Tag.UNSIGNED, ">B"


class LongUnsigned(_TypedInt):
    tag, fmt = Tag.LONG_UNSIGNED, ">H"


class DoubleLongUnsigned(_TypedInt):
    tag, fmt = Tag.DOUBLE_LONG_UNSIGNED, ">I"


class Long64Unsigned(_TypedInt):
    tag, fmt = Tag.LONG64_UNSIGNED, ">Q"


class Enum(_TypedInt):
    tag, fmt = Tag.ENUM, ">B"


class Bcd(_TypedInt):
    """One BCD byte holding two decimal digits (0..99)."""

    tag, fmt = Tag.BCD, ">B"


class _TypedFloat(float):
    tag: ClassVar[int]
    fmt: ClassVar[str]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({float(self)!r})"


class Float32(_TypedFloat):
    tag, fmt = Tag.FLOAT32, ">f"


class Float64(_TypedFloat):
    tag, fmt = Tag.FLOAT64, ">d"


class Utf8String(str):
    """A UTF-8 string (tag 12); a plain ``str`` is a visible-string (tag 10)."""


@dataclass(frozen=True, slots=True)
class BitString:
    """A bit-string as its bits, most significant first: ``BitString("1011")``."""

    bits: str

    def __post_init__(self) -> None:
        if any(b not in "01" for b in self.bits):
            raise ValueError(f"bit-string must be 0/1 characters: {self.bits!r}")

    def to_bytes(self) -> bytes:
        n = len(self.bits)
        if n == 0:
            return b""
        padded = self.bits.ljust((n + 7) // 8 * 8, "0")
        return int(padded, 2).to_bytes(len(padded) // 8, "big")


@dataclass(frozen=True, slots=True)
class Raw:
    """A fixed-length date-time (25, 12 bytes), date (26, 5 bytes) or time (27, 4 bytes) kept as its bytes."""

    tag: int
    data: bytes


_FIXED = {Tag.DATE_TIME: 12, Tag.DATE: 5, Tag.TIME: 4}
_INT_TYPES: dict[int, type[_TypedInt]] = {
    c.tag: c
    for c in (Integer, Long, DoubleLong, Long64, Unsigned, LongUnsigned, DoubleLongUnsigned, Long64Unsigned, Enum, Bcd)
}
_INT_STRUCTS = {tag: struct.Struct(cls.fmt) for tag, cls in _INT_TYPES.items()}
_FLOAT_TYPES: dict[int, type[_TypedFloat]] = {Float32.tag: Float32, Float64.tag: Float64}
_FLOAT_STRUCTS = {tag: struct.Struct(cls.fmt) for tag, cls in _FLOAT_TYPES.items()}


def encode_length(n: int) -> bytes:
    """The compact (BER definite) length of ``n``."""
    if n < 0:
        raise ValueError("a length cannot be negative")
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    if len(body) > 4:
        raise ValueError(f"length {n} too large")
    return bytes((0x80 | len(body),)) + body


def decode_length(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Read a compact length at ``pos``; returns (length, position after it). FrameError when truncated or bad."""
    if pos >= len(data):
        raise FrameError("A-XDR: length missing")
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    n = first & 0x7F
    if n == 0 or n > 4:
        raise FrameError(f"A-XDR: bad length prefix 0x{first:02X}")
    if pos + 1 + n > len(data):
        raise FrameError("A-XDR: length truncated")
    return int.from_bytes(data[pos + 1 : pos + 1 + n], "big"), pos + 1 + n


def encode(value: Any) -> bytes:
    """A-XDR encoding of one value (see the module docstring for the Python types)."""
    out = bytearray()
    _encode_into(out, value, 0)
    return bytes(out)


def _encode_into(out: bytearray, value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError("A-XDR: value nested too deep")
    if value is None:
        out.append(Tag.NULL)
    elif isinstance(value, bool):
        out += bytes((Tag.BOOLEAN, 0xFF if value else 0x00))
    elif isinstance(value, _TypedInt):
        try:
            out.append(value.tag)
            out += _INT_STRUCTS[value.tag].pack(int(value))
        except struct.error as exc:
            raise ValueError(f"A-XDR: {value!r} out of range") from exc
    elif isinstance(value, _TypedFloat):
        out.append(value.tag)
        out += _FLOAT_STRUCTS[value.tag].pack(float(value))
    elif isinstance(value, bytes | bytearray | memoryview):
        out.append(Tag.OCTET_STRING)
        out += encode_length(len(value))
        out += value
    elif isinstance(value, Utf8String):
        raw = value.encode("utf-8")
        out.append(Tag.UTF8_STRING)
        out += encode_length(len(raw)) + raw
    elif isinstance(value, str):
        raw = value.encode("ascii")
        out.append(Tag.VISIBLE_STRING)
        out += encode_length(len(raw)) + raw
    elif isinstance(value, list | tuple):
        out.append(Tag.ARRAY if isinstance(value, list) else Tag.STRUCTURE)
        out += encode_length(len(value))
        for item in value:
            _encode_into(out, item, depth + 1)
    elif isinstance(value, BitString):
        out.append(Tag.BIT_STRING)
        out += encode_length(len(value.bits)) + value.to_bytes()
    elif isinstance(value, Raw):
        if _FIXED.get(value.tag) != len(value.data):
            raise ValueError(f"A-XDR: tag {value.tag} needs {_FIXED.get(value.tag)} bytes")
        out.append(value.tag)
        out += value.data
    else:
        raise ValueError(f"A-XDR: no wire type for {type(value).__name__} {value!r} (use Unsigned(), Float32(), ...)")


def decode(data: bytes | memoryview, *, max_depth: int = MAX_DEPTH) -> Any:
    """Decode exactly one value that fills ``data``; FrameError on truncation, trailing bytes or bad tags."""
    value, pos = decode_one(data, 0, max_depth=max_depth)
    if pos != len(data):
        raise FrameError(f"A-XDR: {len(data) - pos} trailing bytes after the value")
    return value


def decode_one(data: bytes | memoryview, pos: int, *, max_depth: int = MAX_DEPTH) -> tuple[Any, int]:
    """Decode one value starting at ``pos``; returns (value, position after it)."""
    return _decode(data, pos, max_depth)


def _take(data: bytes | memoryview, pos: int, n: int) -> bytes:
    end = pos + n
    if end > len(data):
        raise FrameError(f"A-XDR: value truncated (needs {n} bytes at offset {pos}, {len(data) - pos} left)")
    return bytes(data[pos:end])


def _decode(data: bytes | memoryview, pos: int, depth: int) -> tuple[Any, int]:
    if pos >= len(data):
        raise FrameError("A-XDR: value truncated (no tag)")
    tag = data[pos]
    pos += 1
    if tag in _INT_STRUCTS:
        st = _INT_STRUCTS[tag]
        return _INT_TYPES[tag](st.unpack(_take(data, pos, st.size))[0]), pos + st.size
    if tag == Tag.OCTET_STRING or tag == Tag.VISIBLE_STRING or tag == Tag.UTF8_STRING:
        n, pos = decode_length(data, pos)
        raw = _take(data, pos, n)
        pos += n
        if tag == Tag.OCTET_STRING:
            return raw, pos
        try:
            return (raw.decode("ascii") if tag == Tag.VISIBLE_STRING else Utf8String(raw.decode("utf-8"))), pos
        except UnicodeDecodeError as exc:
            raise FrameError(f"A-XDR: string tag {tag} is not valid text") from exc
    if tag == Tag.ARRAY or tag == Tag.STRUCTURE:
        if depth <= 0:
            raise FrameError("A-XDR: value nested too deep")
        n, pos = decode_length(data, pos)
        if n > len(data) - pos:  # every element takes at least one byte
            raise FrameError(f"A-XDR: {n} elements announced, {len(data) - pos} bytes left")
        items = []
        for _ in range(n):
            item, pos = _decode(data, pos, depth - 1)
            items.append(item)
        return (items if tag == Tag.ARRAY else tuple(items)), pos
    if tag == Tag.NULL:
        return None, pos
    if tag == Tag.BOOLEAN:
        return _take(data, pos, 1)[0] != 0, pos + 1
    if tag in _FLOAT_STRUCTS:
        fs = _FLOAT_STRUCTS[tag]
        return _FLOAT_TYPES[tag](fs.unpack(_take(data, pos, fs.size))[0]), pos + fs.size
    if tag == Tag.BIT_STRING:
        nbits, pos = decode_length(data, pos)
        nbytes = (nbits + 7) // 8
        raw = _take(data, pos, nbytes)
        bits = "".join(f"{b:08b}" for b in raw)[:nbits]
        return BitString(bits), pos + nbytes
    if tag in _FIXED:
        return Raw(tag, _take(data, pos, _FIXED[tag])), pos + _FIXED[tag]
    raise FrameError(f"A-XDR: unknown or unsupported type tag {tag} at offset {pos - 1}")


def to_json(value: Any) -> Any:
    """A JSON-friendly view of a decoded value (bytes as hex, structures as lists)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, BitString):
        return value.bits
    if isinstance(value, Raw):
        return value.data.hex()
    return repr(value)
