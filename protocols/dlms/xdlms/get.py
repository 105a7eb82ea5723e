"""GET service APDUs (Green Book clause 9.4): read attributes, one, a list, or one long value in blocks.

::

    GET-Request          C0 01 iid <class u16> <OBIS 6> <attr i8> <00 | 01 selector data>     normal
                         C0 02 iid <block u32>                                               next
                         C0 03 iid <n> n x (descriptor, access-selection)                    with-list
    GET-Response         C4 01 iid <00 Data | 01 data-access-result>                         normal
                         C4 02 iid <last bool> <block u32> <00 raw-data octet-string | 01 dar>  with-datablock
                         C4 03 iid <n> n x (00 Data | 01 dar)                                with-list
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

__all__ = ["GetRequest", "GetResponse"]


@dataclass(frozen=True, slots=True)
class GetRequest:
    """``kind`` 1 normal (``items`` one entry), 2 next (``block``), 3 with-list."""

    kind: int
    invoke_id: int
    items: tuple[tuple[AttributeDescriptor, AccessSelection | None], ...] = ()
    block: int = 0

    def to_bytes(self) -> bytes:
        head = bytes((0xC0, self.kind, self.invoke_id))
        if self.kind == 2:
            return head + self.block.to_bytes(4, "big")
        body = b"".join(d.to_bytes() + access_bytes(a) for d, a in self.items)
        return head + (axdr.encode_length(len(self.items)) if self.kind == 3 else b"") + body

    @classmethod
    def from_bytes(cls, data: bytes) -> GetRequest:
        kind, iid = byte_at(data, 1), byte_at(data, 2)
        if kind == 2:
            return cls(2, iid, block=u32_at(data, 3))
        count, pos = (1, 3) if kind == 1 else axdr.decode_length(data, 3) if kind == 3 else (-1, 0)
        if count < 0 or count > len(data):
            raise FrameError(f"GET-Request: unknown choice {kind}")
        items = []
        for _ in range(count):
            desc, pos = AttributeDescriptor.parse(data, pos)
            access, pos = parse_access(data, pos)
            items.append((desc, access))
        if pos != len(data):
            raise FrameError("GET-Request: trailing bytes")
        return cls(kind, iid, tuple(items))


@dataclass(frozen=True, slots=True)
class GetResponse:
    """``kind`` 1 normal, 2 with-datablock, 3 with-list.

    ``results``: per item ``(data bytes, None)`` or ``(None, data-access-result)``. For a datablock, ``results``
    holds one item whose bytes are the raw block; ``last`` and ``block`` number it.
    """

    kind: int
    invoke_id: int
    results: tuple[tuple[bytes | None, int | None], ...]
    last: bool = True
    block: int = 0

    def to_bytes(self) -> bytes:
        head = bytes((0xC4, self.kind, self.invoke_id))
        if self.kind == 2:
            data, err = self.results[0]
            head += bytes((0xFF if self.last else 0,)) + self.block.to_bytes(4, "big")
            if data is not None:
                return head + b"\x00" + axdr.encode_length(len(data)) + data
            return head + bytes((1, err or 0))
        body = b"".join(b"\x00" + d if d is not None else bytes((1, e or 0)) for d, e in self.results)
        return head + (axdr.encode_length(len(self.results)) if self.kind == 3 else b"") + body

    @classmethod
    def from_bytes(cls, data: bytes) -> GetResponse:
        kind, iid = byte_at(data, 1), byte_at(data, 2)
        if kind == 2:
            last, block = byte_at(data, 3) != 0, u32_at(data, 4)
            if byte_at(data, 8) == 0:
                raw, pos = raw_block(data, 9)
                if pos != len(data):
                    raise FrameError("GET-Response: trailing bytes after the data block")
                return cls(2, iid, ((raw, None),), last, block)
            return cls(2, iid, ((None, byte_at(data, 9)),), last, block)
        count, pos = (1, 3) if kind == 1 else axdr.decode_length(data, 3) if kind == 3 else (-1, 0)
        if count < 0 or count > len(data):
            raise FrameError(f"GET-Response: unknown choice {kind}")
        results: list[tuple[bytes | None, int | None]] = []
        for _ in range(count):
            if byte_at(data, pos) == 0:
                end = data_end(data, pos + 1)
                results.append((data[pos + 1 : end], None))
                pos = end
            else:
                results.append((None, byte_at(data, pos + 1)))
                pos += 2
        if pos != len(data):
            raise FrameError("GET-Response: trailing bytes")
        return cls(kind, iid, tuple(results))
