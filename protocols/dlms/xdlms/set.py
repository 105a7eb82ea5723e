"""SET service APDUs (Green Book clause 9.4): write an attribute, in one APDU or in blocks.

::

    SET-Request          C1 01 iid <descriptor> <access-selection> Data                      normal
                         C1 02 iid <descriptor> <access-selection> <last> <block> <raw>      with-first-datablock
                         C1 03 iid <last> <block> <raw>                                      with-datablock
    SET-Response         C5 01 iid dar | C5 02 iid block | C5 03 iid dar block
"""

from __future__ import annotations

from dataclasses import dataclass

from amiflow.errors import FrameError

from .. import axdr
from .fields import (
    AccessSelection,
    AttributeDescriptor,
    access_bytes,
    byte_at,
    data_end,
    parse_access,
    raw_block,
    u32_at,
)

__all__ = ["SetRequest", "SetResponse"]


@dataclass(frozen=True, slots=True)
class SetRequest:
    """``kind`` 1 normal, 2 with-first-datablock, 3 with-datablock; ``data`` the Data bytes or the raw block."""

    kind: int
    invoke_id: int
    descriptor: AttributeDescriptor | None
    data: bytes
    access: AccessSelection | None = None
    last: bool = True
    block: int = 0

    def to_bytes(self) -> bytes:
        out = bytes((0xC1, self.kind, self.invoke_id))
        if self.kind in (1, 2):
            assert self.descriptor is not None
            out += self.descriptor.to_bytes() + access_bytes(self.access)
        if self.kind == 1:
            return out + self.data
        out += bytes((0xFF if self.last else 0,)) + self.block.to_bytes(4, "big")
        return out + axdr.encode_length(len(self.data)) + self.data

    @classmethod
    def from_bytes(cls, data: bytes) -> SetRequest:
        kind, iid = byte_at(data, 1), byte_at(data, 2)
        if kind not in (1, 2, 3):
            raise FrameError(f"SET-Request: unsupported choice {kind}")
        desc, access, pos = None, None, 3
        if kind in (1, 2):
            desc, pos = AttributeDescriptor.parse(data, 3)
            access, pos = parse_access(data, pos)
        if kind == 1:
            if data_end(data, pos) != len(data):
                raise FrameError("SET-Request: trailing bytes")
            return cls(1, iid, desc, data[pos:], access)
        last, block = byte_at(data, pos) != 0, u32_at(data, pos + 1)
        raw, end = raw_block(data, pos + 5)
        if end != len(data):
            raise FrameError("SET-Request: trailing bytes")
        return cls(kind, iid, desc, raw, access, last, block)


@dataclass(frozen=True, slots=True)
class SetResponse:
    """``kind`` 1 normal (result), 2 datablock (block), 3 last-datablock (result, block)."""

    kind: int
    invoke_id: int
    result: int = 0
    block: int = 0

    def to_bytes(self) -> bytes:
        head = bytes((0xC5, self.kind, self.invoke_id))
        if self.kind == 1:
            return head + bytes((self.result,))
        if self.kind == 2:
            return head + self.block.to_bytes(4, "big")
        return head + bytes((self.result,)) + self.block.to_bytes(4, "big")

    @classmethod
    def from_bytes(cls, data: bytes) -> SetResponse:
        kind, iid = byte_at(data, 1), byte_at(data, 2)
        if kind == 1:
            return cls(1, iid, byte_at(data, 3))
        if kind == 2:
            return cls(2, iid, block=u32_at(data, 3))
        if kind == 3:
            return cls(3, iid, byte_at(data, 3), u32_at(data, 4))
        raise FrameError(f"SET-Response: unsupported choice {kind}")
