"""ACTION service APDUs (Green Book clause 9.4): invoke a method, with optional parameters and return data.

::

    ACTION-Request       C3 01 iid <class> <OBIS> <method i8> <00 | 01 Data>
    ACTION-Response      C7 01 iid <action-result> <00 | 01 (00 Data | 01 dar)>
"""

from __future__ import annotations

from dataclasses import dataclass

from amiflow.errors import FrameError

from .fields import AttributeDescriptor, byte_at, data_end

__all__ = ["ActionRequest", "ActionResponse"]


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
        if byte_at(data, 1) != 1:
            raise FrameError(f"ACTION-Request: unsupported choice {data[1]}")
        desc, pos = AttributeDescriptor.parse(data, 3)
        params = None
        if byte_at(data, pos) == 1:
            if data_end(data, pos + 1) != len(data):
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
        if byte_at(data, 1) != 1:
            raise FrameError(f"ACTION-Response: unsupported choice {data[1]}")
        iid, result = byte_at(data, 2), byte_at(data, 3)
        if byte_at(data, 4) == 0:
            return cls(iid, result)
        if byte_at(data, 5) == 0:
            if data_end(data, 6) != len(data):
                raise FrameError("ACTION-Response: trailing bytes")
            return cls(iid, result, data[6:])
        return cls(iid, result, None, byte_at(data, 6))
