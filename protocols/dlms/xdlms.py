"""xDLMS service APDUs with logical-name referencing (Green Book clause 9.4 / IEC 62056-5-3), A-XDR encoded.

::

    GET-Request          C0 01 iid <class u16> <OBIS 6> <attr i8> <00 | 01 selector data>     normal
                         C0 02 iid <block u32>                                               next
                         C0 03 iid <n> n x (descriptor, access-selection)                    with-list
    GET-Response         C4 01 iid <00 Data | 01 data-access-result>                         normal
                         C4 02 iid <last bool> <block u32> <00 raw-data octet-string | 01 dar>  with-datablock
                         C4 03 iid <n> n x (00 Data | 01 dar)                                with-list
    SET-Request          C1 01 iid <descriptor> <access-selection> Data                      normal
                         C1 02 iid <descriptor> <access-selection> <last> <block> <raw>      with-first-datablock
                         C1 03 iid <last> <block> <raw>                                      with-datablock
    SET-Response         C5 01 iid dar | C5 02 iid block | C5 03 iid dar block
    ACTION-Request       C3 01 iid <class> <OBIS> <method i8> <00 | 01 Data>
    ACTION-Response      C7 01 iid <action-result> <00 | 01 (00 Data | 01 dar)>
    Exception-Response   D8 <state-error> <service-error choice> <value>

``iid`` is the invoke-id-and-priority byte (bits 0-3 invoke id, bit 6 confirmed, bit 7 high priority). ``Data`` is
kept as its A-XDR bytes (``data``); decode it with :func:`protocols.dlms.axdr.decode` or the profile fast path.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from amiflow.errors import FrameError
from amiflow.types import Obis

from . import axdr

__all__ = [
    "AccessSelection",
    "ActionRequest",
    "ActionResponse",
    "ActionResult",
    "AttributeDescriptor",
    "DataAccessResult",
    "ExceptionResponse",
    "GetRequest",
    "GetResponse",
    "SetRequest",
    "SetResponse",
    "parse_xdlms",
]

_DESC: Final = struct.Struct(">H6sb")


class DataAccessResult(enum.IntEnum):
    SUCCESS = 0
    HARDWARE_FAULT = 1
    TEMPORARY_FAILURE = 2
    READ_WRITE_DENIED = 3
    OBJECT_UNDEFINED = 4
    OBJECT_CLASS_INCONSISTENT = 9
    OBJECT_UNAVAILABLE = 11
    TYPE_UNMATCHED = 12
    SCOPE_OF_ACCESS_VIOLATED = 13
    DATA_BLOCK_UNAVAILABLE = 14
    LONG_GET_ABORTED = 15
    NO_LONG_GET_IN_PROGRESS = 16
    LONG_SET_ABORTED = 17
    NO_LONG_SET_IN_PROGRESS = 18
    DATA_BLOCK_NUMBER_INVALID = 19
    OTHER_REASON = 250


class ActionResult(enum.IntEnum):
    SUCCESS = 0
    HARDWARE_FAULT = 1
    TEMPORARY_FAILURE = 2
    READ_WRITE_DENIED = 3
    OBJECT_UNDEFINED = 4
    OBJECT_CLASS_INCONSISTENT = 9
    OBJECT_UNAVAILABLE = 11
    TYPE_UNMATCHED = 12
    SCOPE_OF_ACCESS_VIOLATED = 13
    DATA_BLOCK_UNAVAILABLE = 14
    LONG_ACTION_ABORTED = 15
    NO_LONG_ACTION_IN_PROGRESS = 16
    OTHER_REASON = 250


def result_name(enum_type: type[enum.IntEnum], value: int) -> str:
    """``read-write-denied`` for a known code, ``code 77`` otherwise."""
    try:
        return enum_type(value).name.lower().replace("_", "-")
    except ValueError:
        return f"code {value}"


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


def _access_to_bytes(access: AccessSelection | None) -> bytes:
    return b"\x00" if access is None else access.to_bytes()


def _parse_access(data: bytes, pos: int) -> tuple[AccessSelection | None, int]:
    flag = _byte(data, pos)
    if flag == 0:
        return None, pos + 1
    selector = _byte(data, pos + 1)
    params, pos = axdr.decode_one(data, pos + 2)
    return AccessSelection(selector, params), pos


def _byte(data: bytes, pos: int) -> int:
    if pos >= len(data):
        raise FrameError("xDLMS: APDU truncated")
    return data[pos]


def _u32(data: bytes, pos: int) -> int:
    if pos + 4 > len(data):
        raise FrameError("xDLMS: block number truncated")
    return int.from_bytes(data[pos : pos + 4], "big")


def _raw_block(data: bytes, pos: int) -> tuple[bytes, int]:
    n, pos = axdr.decode_length(data, pos)
    if pos + n > len(data):
        raise FrameError("xDLMS: data block truncated")
    return data[pos : pos + n], pos + n


def _data_end(data: bytes, pos: int) -> int:
    return axdr.decode_one(data, pos)[1]


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
        body = b"".join(d.to_bytes() + _access_to_bytes(a) for d, a in self.items)
        return head + (axdr.encode_length(len(self.items)) if self.kind == 3 else b"") + body

    @classmethod
    def from_bytes(cls, data: bytes) -> GetRequest:
        kind, iid = _byte(data, 1), _byte(data, 2)
        if kind == 2:
            return cls(2, iid, block=_u32(data, 3))
        count, pos = (1, 3) if kind == 1 else axdr.decode_length(data, 3) if kind == 3 else (-1, 0)
        if count < 0 or count > len(data):
            raise FrameError(f"GET-Request: unknown choice {kind}")
        items = []
        for _ in range(count):
            desc, pos = AttributeDescriptor.parse(data, pos)
            access, pos = _parse_access(data, pos)
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
        kind, iid = _byte(data, 1), _byte(data, 2)
        if kind == 2:
            last, block = _byte(data, 3) != 0, _u32(data, 4)
            if _byte(data, 8) == 0:
                raw, pos = _raw_block(data, 9)
                if pos != len(data):
                    raise FrameError("GET-Response: trailing bytes after the data block")
                return cls(2, iid, ((raw, None),), last, block)
            return cls(2, iid, ((None, _byte(data, 9)),), last, block)
        count, pos = (1, 3) if kind == 1 else axdr.decode_length(data, 3) if kind == 3 else (-1, 0)
        if count < 0 or count > len(data):
            raise FrameError(f"GET-Response: unknown choice {kind}")
        results: list[tuple[bytes | None, int | None]] = []
        for _ in range(count):
            if _byte(data, pos) == 0:
                end = _data_end(data, pos + 1)
                results.append((data[pos + 1 : end], None))
                pos = end
            else:
                results.append((None, _byte(data, pos + 1)))
                pos += 2
        if pos != len(data):
            raise FrameError("GET-Response: trailing bytes")
        return cls(kind, iid, tuple(results))


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
            out += self.descriptor.to_bytes() + _access_to_bytes(self.access)
        if self.kind == 1:
            return out + self.data
        out += bytes((0xFF if self.last else 0,)) + self.block.to_bytes(4, "big")
        return out + axdr.encode_length(len(self.data)) + self.data

    @classmethod
    def from_bytes(cls, data: bytes) -> SetRequest:
        kind, iid = _byte(data, 1), _byte(data, 2)
        if kind not in (1, 2, 3):
            raise FrameError(f"SET-Request: unsupported choice {kind}")
        desc, access, pos = None, None, 3
        if kind in (1, 2):
            desc, pos = AttributeDescriptor.parse(data, 3)
            access, pos = _parse_access(data, pos)
        if kind == 1:
            if _data_end(data, pos) != len(data):
                raise FrameError("SET-Request: trailing bytes")
            return cls(1, iid, desc, data[pos:], access)
        last, block = _byte(data, pos) != 0, _u32(data, pos + 1)
        raw, end = _raw_block(data, pos + 5)
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
        kind, iid = _byte(data, 1), _byte(data, 2)
        if kind == 1:
            return cls(1, iid, _byte(data, 3))
        if kind == 2:
            return cls(2, iid, block=_u32(data, 3))
        if kind == 3:
            return cls(3, iid, _byte(data, 3), _u32(data, 4))
        raise FrameError(f"SET-Response: unsupported choice {kind}")


@dataclass(frozen=True, slots=True)
class ActionRequest:
    """ACTION-Request-Normal; ``descriptor.index`` is the method id, ``data`` the parameter bytes or None."""

    invoke_id: int
    descriptor: AttributeDescriptor
    data: bytes | None = None

    def to_bytes(self) -> bytes:
        params = b"\x00" if self.data is None else b"\x01" + self.data
        return bytes((0xC3, 1, self.invoke_id)) + self.descriptor.to_bytes() + params

    @classmethod
    def from_bytes(cls, data: bytes) -> ActionRequest:
        if _byte(data, 1) != 1:
            raise FrameError(f"ACTION-Request: unsupported choice {data[1]}")
        desc, pos = AttributeDescriptor.parse(data, 3)
        params = None
        if _byte(data, pos) == 1:
            if _data_end(data, pos + 1) != len(data):
                raise FrameError("ACTION-Request: trailing bytes")
            params = data[pos + 1 :]
        elif pos + 1 != len(data):
            raise FrameError("ACTION-Request: trailing bytes")
        return cls(data[2], desc, params)


@dataclass(frozen=True, slots=True)
class ActionResponse:
    """ACTION-Response-Normal: the action-result and optional return data (bytes) or data-access-result."""

    invoke_id: int
    result: int
    data: bytes | None = None
    data_error: int | None = None

    def to_bytes(self) -> bytes:
        out = bytes((0xC7, 1, self.invoke_id, self.result))
        if self.data is not None:
            return out + b"\x01\x00" + self.data
        if self.data_error is not None:
            return out + bytes((1, 1, self.data_error))
        return out + b"\x00"

    @classmethod
    def from_bytes(cls, data: bytes) -> ActionResponse:
        if _byte(data, 1) != 1:
            raise FrameError(f"ACTION-Response: unsupported choice {data[1]}")
        iid, result = _byte(data, 2), _byte(data, 3)
        if _byte(data, 4) == 0:
            return cls(iid, result)
        if _byte(data, 5) == 0:
            if _data_end(data, 6) != len(data):
                raise FrameError("ACTION-Response: trailing bytes")
            return cls(iid, result, data[6:])
        return cls(iid, result, None, _byte(data, 6))


@dataclass(frozen=True, slots=True)
class ExceptionResponse:
    """EXCEPTION-Response: state-error (1 service-not-allowed, 2 service-unknown) and service-error."""

    state_error: int
    service_error: int
    value: int = 0

    STATE: ClassVar[dict[int, str]] = {1: "service-not-allowed", 2: "service-unknown"}
    SERVICE: ClassVar[dict[int, str]] = {
        1: "operation-not-possible",
        2: "service-not-supported",
        3: "other-reason",
        4: "pdu-too-long",
        5: "deciphering-error",
        6: "invocation-counter-error",
    }

    def to_bytes(self) -> bytes:
        out = bytes((0xD8, self.state_error, self.service_error))
        return out + (self.value.to_bytes(4, "big") if self.service_error == 6 else b"")

    @classmethod
    def from_bytes(cls, data: bytes) -> ExceptionResponse:
        service = _byte(data, 2)
        value = _u32(data, 3) if service == 6 else 0
        return cls(_byte(data, 1), service, value)

    def describe(self) -> str:
        state = self.STATE.get(self.state_error, f"state-error {self.state_error}")
        return f"{state}, {self.SERVICE.get(self.service_error, f'service-error {self.service_error}')}"


Apdu = GetRequest | GetResponse | SetRequest | SetResponse | ActionRequest | ActionResponse | ExceptionResponse
_PARSERS: Final[dict[int, Any]] = {
    0xC0: GetRequest.from_bytes,
    0xC4: GetResponse.from_bytes,
    0xC1: SetRequest.from_bytes,
    0xC5: SetResponse.from_bytes,
    0xC3: ActionRequest.from_bytes,
    0xC7: ActionResponse.from_bytes,
    0xD8: ExceptionResponse.from_bytes,
}


def parse_xdlms(data: bytes) -> Apdu:
    """Parse one xDLMS service APDU; FrameError for unknown tags or malformed content."""
    if not data:
        raise FrameError("xDLMS: empty APDU")
    parser = _PARSERS.get(data[0])
    if parser is None:
        raise FrameError(f"xDLMS: unsupported APDU tag 0x{data[0]:02X}")
    result: Apdu = parser(data)
    return result
