"""One xDLMS service APDU from its bytes: the dispatch on the first (tag) byte."""

from __future__ import annotations

from typing import Any, Final

from amiflow.errors import FrameError

from .action import ActionRequest, ActionResponse
from .exception import ExceptionResponse
from .get import GetRequest, GetResponse
from .set import SetRequest, SetResponse

__all__ = ["Apdu", "parse_xdlms"]

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
