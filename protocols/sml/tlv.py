"""SML type-length-value fields (SML 1.04 clause 6.3 / BSI TR-03109-1 Anlage IV 6.3), decoded and encoded, sans-I/O.

Every SML value starts with a type-length field::

    bit 7    more TL bytes follow (each further byte: bit 7 more, bits 6-4 = 000, bits 3-0 next length nibble)
    bits 6-4 type: 000 octet string, 100 boolean, 101 integer (signed), 110 unsigned, 111 list
    bits 3-0 length nibble (most significant nibble first over all TL bytes)

For octet strings, booleans and integers the length counts the whole element *including* its TL bytes
(``0x0b`` = 10 data bytes, ``0x83 0x02`` = 0x32 - 2 = 48 data bytes); for lists it is the number of elements.
``0x00`` is EndOfSmlMsg and ``0x01`` (an empty octet string) marks an absent OPTIONAL field. Integers come in
any width of 1 to 8 bytes, odd ones included (EMH: 5-byte ``56``, DZG: 3-byte ``64`` status), big-endian.

Decoded values: bytes, bool, int, tuple (list), None (absent OPTIONAL) and :data:`END_OF_MESSAGE`. Malformed or
truncated input raises FrameError; nesting is bounded by :data:`MAX_DEPTH`. The encoder takes the same values;
:class:`Typed` pins an integer's wire type and width (a meter's ``55`` Integer32 rather than the smallest fit);
a value that does not fit its field raises FrameError too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, TypeAlias

from amiflow.errors import FrameError

__all__ = [
    "END_OF_MESSAGE",
    "MAX_DEPTH",
    "TYPE_BOOL",
    "TYPE_INT",
    "TYPE_LIST",
    "TYPE_OCTETS",
    "TYPE_UINT",
    "EndOfMessage",
    "SmlValue",
    "Typed",
    "decode_tlv",
    "decode_value",
    "encode_int",
    "encode_list",
    "encode_octets",
    "encode_tl",
    "encode_uint",
    "encode_value",
    "read_tl",
]

TYPE_OCTETS: Final = 0
TYPE_BOOL: Final = 4
TYPE_INT: Final = 5
TYPE_UINT: Final = 6
TYPE_LIST: Final = 7
MAX_DEPTH: Final = 32
_MAX_TL_BYTES: Final = 6


class EndOfMessage:
    """The EndOfSmlMsg marker (``0x00``)."""

    _instance: EndOfMessage | None = None

    def __new__(cls) -> EndOfMessage:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "END_OF_MESSAGE"


END_OF_MESSAGE: Final = EndOfMessage()
SmlValue: TypeAlias = "bytes | bool | int | tuple[SmlValue, ...] | EndOfMessage | None"


@dataclass(frozen=True, slots=True)
class Typed:
    """An integer for the encoder with its wire type: ``signed`` (Integer) or not (Unsigned), ``width`` 1-8 bytes."""

    value: int
    signed: bool
    width: int


# -- decoding ------------------------------------------------------------------------------------------------------


def read_tl(data: bytes, pos: int) -> tuple[int, int, int]:
    """The TL field at ``pos``: (type, length, position after the TL bytes); FrameError when malformed."""
    if pos >= len(data):
        raise FrameError(f"SML TLV: truncated, a TL field was expected at byte {pos}")
    b = data[pos]
    kind = (b >> 4) & 0x07
    length = b & 0x0F
    p = pos + 1
    while b & 0x80:
        if p >= len(data):
            raise FrameError(f"SML TLV: truncated multi-byte TL field at byte {pos}")
        if p - pos >= _MAX_TL_BYTES:
            raise FrameError(f"SML TLV: TL field at byte {pos} is longer than {_MAX_TL_BYTES} bytes")
        b = data[p]
        if b & 0x70:
            raise FrameError(f"SML TLV: TL continuation byte {b:02x} at byte {p} has a type")
        length = (length << 4) | (b & 0x0F)
        p += 1
    return kind, length, p


def decode_value(data: bytes, pos: int = 0, depth: int = 0) -> tuple[SmlValue, int]:
    """Decode the element at ``pos``: (value, position after it)."""
    if pos < len(data) and data[pos] < 0x80:  # a one-byte TL, nearly every field: skip the general reader
        b = data[pos]
        kind, length, p = b >> 4, b & 0x0F, pos + 1
    else:
        kind, length, p = read_tl(data, pos)
    if kind == TYPE_LIST:
        return _decode_list(data, pos, p, length, depth)
    size = length - (p - pos)
    if kind == TYPE_OCTETS:
        if length == 0:
            if p - pos != 1:
                raise FrameError(f"SML TLV: a multi-byte TL of length 0 at byte {pos}")
            return END_OF_MESSAGE, p
        if size < 0:
            raise FrameError(f"SML TLV: octet string length {length} at byte {pos} is shorter than its TL")
        if p + size > len(data):
            raise FrameError(f"SML TLV: octet string of {size} bytes at byte {pos} runs past the end")
        if length == 1:
            return None, p
        return bytes(data[p : p + size]), p + size
    if kind not in (TYPE_BOOL, TYPE_INT, TYPE_UINT):
        raise FrameError(f"SML TLV: unknown type {kind} in TL byte {data[pos]:02x} at byte {pos}")
    if not 1 <= size <= 8 or (kind == TYPE_BOOL and size != 1):
        raise FrameError(f"SML TLV: a {size}-byte {_NAMES[kind]} at byte {pos}")
    end = p + size
    if end > len(data):
        raise FrameError(f"SML TLV: {_NAMES[kind]} at byte {pos} runs past the end")
    if kind == TYPE_BOOL:
        return data[p] != 0, end
    return int.from_bytes(data[p:end], "big", signed=kind == TYPE_INT), end


def _decode_list(data: bytes, pos: int, p: int, count: int, depth: int) -> tuple[SmlValue, int]:
    if depth >= MAX_DEPTH:
        raise FrameError(f"SML TLV: lists nested deeper than {MAX_DEPTH} at byte {pos}")
    if count > len(data) - p:  # every element takes at least one byte: bounds the work on hostile input
        raise FrameError(f"SML TLV: a list of {count} elements at byte {pos} cannot fit the remaining bytes")
    items: list[SmlValue] = []
    for _ in range(count):
        value, p = decode_value(data, p, depth + 1)
        if value is END_OF_MESSAGE:
            raise FrameError(f"SML TLV: EndOfSmlMsg inside a list at byte {p - 1}")
        items.append(value)
    return tuple(items), p


def decode_tlv(data: bytes) -> SmlValue:
    """Exactly one element spanning ``data``; FrameError for trailing bytes."""
    value, end = decode_value(bytes(data), 0)
    if end != len(data):
        raise FrameError(f"SML TLV: {len(data) - end} bytes after the element")
    return value


_NAMES: Final = {TYPE_BOOL: "boolean", TYPE_INT: "integer", TYPE_UINT: "unsigned", TYPE_OCTETS: "octet string"}


# -- encoding ------------------------------------------------------------------------------------------------------


def encode_tl(kind: int, length: int, n: int = 1) -> bytes:
    """A TL field of ``n`` bytes for ``length`` (which, for a non-list, already counts the ``n`` TL bytes)."""
    if length >= 1 << (4 * n):
        raise FrameError(f"SML TLV: length {length} does not fit {n} TL bytes")
    out = bytearray()
    for i in range(n):
        nibble = (length >> (4 * (n - 1 - i))) & 0x0F
        out.append((0x80 if i < n - 1 else 0) | ((kind << 4) if i == 0 else 0) | nibble)
    return bytes(out)


def _tl_for_data(kind: int, size: int) -> bytes:
    n = 1
    while size + n >= 1 << (4 * n):
        n += 1
    return encode_tl(kind, size + n, n)


def encode_octets(data: bytes | None) -> bytes:
    """An octet string (``01``, the absent OPTIONAL, for None; ``80 02`` for an empty one, as ``01`` means absent)."""
    if data is None:
        return b"\x01"
    return _tl_for_data(TYPE_OCTETS, len(data)) + bytes(data) if data else encode_tl(TYPE_OCTETS, 2, 2)


def _width(value: int, signed: bool) -> int:
    bits = (value if value >= 0 else ~value).bit_length() + (1 if signed else 0)
    return max(1, (bits + 7) // 8)


def encode_uint(value: int, width: int | None = None) -> bytes:
    """An Unsigned of ``width`` bytes (the smallest that fits when None)."""
    w = width or _width(value, False)
    if not 1 <= w <= 8 or value < 0 or value >= 1 << (8 * w):
        raise FrameError(f"SML TLV: {value} is not an Unsigned of {w} bytes")
    return encode_tl(TYPE_UINT, w + 1) + value.to_bytes(w, "big")


def encode_int(value: int, width: int | None = None) -> bytes:
    """An Integer of ``width`` bytes (the smallest that fits when None)."""
    w = width or _width(value, True)
    if not 1 <= w <= 8 or not -(1 << (8 * w - 1)) <= value < 1 << (8 * w - 1):
        raise FrameError(f"SML TLV: {value} is not an Integer of {w} bytes")
    return encode_tl(TYPE_INT, w + 1) + value.to_bytes(w, "big", signed=True)


def encode_list(items: Iterable[bytes]) -> bytes:
    """A list of already encoded elements."""
    parts = list(items)
    n = 1
    while len(parts) >= 1 << (4 * n):
        n += 1
    return encode_tl(TYPE_LIST, len(parts), n) + b"".join(parts)


def encode_value(value: SmlValue | Typed) -> bytes:
    """Any value: bytes, None, bool, an int (Unsigned when >= 0, else Integer; smallest width), a Typed, a tuple."""
    if isinstance(value, Typed):
        return encode_int(value.value, value.width) if value.signed else encode_uint(value.value, value.width)
    if isinstance(value, bool):
        return bytes((0x42, 1 if value else 0))
    if isinstance(value, int):
        return encode_uint(value) if value >= 0 else encode_int(value)
    if isinstance(value, tuple):
        return encode_list(encode_value(v) for v in value)
    if isinstance(value, EndOfMessage):
        return b"\x00"
    return encode_octets(value)
