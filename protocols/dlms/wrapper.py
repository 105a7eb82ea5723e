"""The DLMS/COSEM TCP-UDP wrapper (IEC 62056-47 / Green Book clause 7.3.3.2).

Each APDU travels behind an 8-byte header, all fields big-endian::

    version (2) = 0x0001 | source wPort (2) | destination wPort (2) | length (2) | APDU (length bytes)

The wPorts are the client SAP (16 public, 1 management) and the server logical device (1). TCP is reliable, so a
bad header means the stream is out of step: :class:`WrapperFramer` raises FrameError and resyncs by skipping to the
next plausible ``00 01`` header. Sans-I/O: feed bytes with ``receive_data``, pull frames with ``next_event``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from amiflow.errors import FrameError

from .hdlc_frame import NEED_DATA, _NeedData

__all__ = ["HEADER", "WrapperFrame", "WrapperFramer"]

HEADER: Final = struct.Struct(">HHHH")
VERSION: Final = 1
DEFAULT_MAX_APDU: Final = 0xFFFF


@dataclass(frozen=True, slots=True)
class WrapperFrame:
    """One wrapper frame: ``source`` and ``dest`` wPorts and the APDU."""

    source: int
    dest: int
    apdu: bytes

    def to_bytes(self) -> bytes:
        if len(self.apdu) > 0xFFFF:
            raise ValueError("wrapper: APDU longer than 65535 bytes")
        return HEADER.pack(VERSION, self.source, self.dest, len(self.apdu)) + self.apdu

    @classmethod
    def from_bytes(cls, raw: bytes) -> WrapperFrame:
        framer = WrapperFramer()
        framer.receive_data(raw)
        frame = framer.next_event()
        if not isinstance(frame, WrapperFrame) or framer.buffered:
            raise FrameError("wrapper: not exactly one complete frame")
        return frame


class WrapperFramer:
    """Byte stream -> :class:`WrapperFrame`; APDUs longer than ``max_apdu`` are refused (bounded buffering)."""

    def __init__(self, *, max_apdu: int = DEFAULT_MAX_APDU) -> None:
        self._buf = bytearray()
        self.max_apdu = max_apdu

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def receive_data(self, data: bytes) -> None:
        self._buf += data

    def next_event(self) -> WrapperFrame | _NeedData:
        buf = self._buf
        if len(buf) < 2:
            return NEED_DATA
        if buf[0] != 0 or buf[1] != VERSION:
            version = bytes(buf[:2]).hex()
            self._resync()
            raise FrameError(f"wrapper: bad version {version} (expected 0001)")
        if len(buf) < HEADER.size:
            return NEED_DATA
        _, source, dest, length = HEADER.unpack_from(buf)
        if length > self.max_apdu or length == 0:
            self._resync()
            raise FrameError(f"wrapper: APDU length {length} outside 1..{self.max_apdu}")
        end = HEADER.size + length
        if len(buf) < end:
            return NEED_DATA
        frame = WrapperFrame(source, dest, bytes(buf[HEADER.size : end]))
        del buf[:end]
        return frame

    def _resync(self) -> None:
        nxt = self._buf.find(b"\x00\x01", 1)
        if nxt < 0:
            del self._buf[: max(len(self._buf) - 1, 1)]
        else:
            del self._buf[:nxt]
