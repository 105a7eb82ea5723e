"""The fields xDLMS service APDUs share: the attribute (or method) descriptor, selective access, bounded reads.

::

    descriptor         <class u16> <OBIS 6> <index i8>
    access-selection   00 (none) | 01 <selector u8> <parameters: one A-XDR value>

Every read below checks the length first and raises FrameError for a truncated APDU.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Final

from amiflow.errors import FrameError
from amiflow.types import Obis

from .. import axdr

__all__ = [
    "AccessSelection",
    "AttributeDescriptor",
    "access_bytes",
    "byte_at",
    "data_end",
    "parse_access",
    "raw_block",
    "u32_at",
]

_DESC: Final = struct.Struct(">H6sb")


@dataclass(frozen=True, slots=True)
class AttributeDescriptor:
    """A COSEM attribute (or, for ACTION, method) address: interface class, logical name, index."""

    class_id: int
    obis: Obis
    index: int

    def to_bytes(self) -> bytes:
        return _DESC.pack(self.class_id, self.obis.to_bytes(), self.index)

    @classmethod
    def parse(cls, data: bytes, pos: int) -> tuple[AttributeDescriptor, int]:
        if pos + _DESC.size > len(data):
            raise FrameError("xDLMS: attribute descriptor truncated")
        class_id, ln, index = _DESC.unpack_from(data, pos)
        return cls(class_id, Obis.from_bytes(ln), index), pos + _DESC.size


@dataclass(frozen=True, slots=True)
class AccessSelection:
    """Selective access: selector 1 range_descriptor, 2 entry_descriptor; ``parameters`` an A-XDR value."""

    selector: int
    parameters: Any

    def to_bytes(self) -> bytes:
        return bytes((1, self.selector)) + axdr.encode(self.parameters)


def access_bytes(access: AccessSelection | None) -> bytes:
    """The access-selection field: ``00`` for none."""
    return b"\x00" if access is None else access.to_bytes()


def parse_access(data: bytes, pos: int) -> tuple[AccessSelection | None, int]:
    """The access-selection field at ``pos``, and the position after it."""
    flag = byte_at(data, pos)
    if flag == 0:
        return None, pos + 1
    selector = byte_at(data, pos + 1)
    params, pos = axdr.decode_one(data, pos + 2)
    return AccessSelection(selector, params), pos


def byte_at(data: bytes, pos: int) -> int:
    """``data[pos]``; FrameError past the end."""
    if pos >= len(data):
        raise FrameError("xDLMS: APDU truncated")
    return data[pos]


def u32_at(data: bytes, pos: int) -> int:
    """The big-endian block number at ``pos``."""
    if pos + 4 > len(data):
        raise FrameError("xDLMS: block number truncated")
    return int.from_bytes(data[pos : pos + 4], "big")


def raw_block(data: bytes, pos: int) -> tuple[bytes, int]:
    """A length-prefixed raw data block at ``pos``, and the position after it."""
    n, pos = axdr.decode_length(data, pos)
    if pos + n > len(data):
        raise FrameError("xDLMS: data block truncated")
    return data[pos : pos + n], pos + n


def data_end(data: bytes, pos: int) -> int:
    """The position after the A-XDR value at ``pos`` (which is checked, not kept)."""
    return axdr.decode_one(data, pos)[1]
