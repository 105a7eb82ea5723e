"""SML transport protocol version 1 (SML 1.04 clause 8 / BSI TR-03109-1 Anlage IV 7.2), sans-I/O.

A meter pushes *SML files*, each wrapped as::

    1b1b1b1b 01010101            start: escape sequence + version 1
    <SML messages ...>           1b1b1b1b in the data is sent twice (1b1b1b1b 1b1b1b1b)
    00 x N                       padding, so that the data (escaped) is a multiple of 4 bytes (N 0-3; DZG: 4)
    1b1b1b1b 1a NN CL CH         end: escape, 0x1a, NN = number of padding bytes, CRC-16/X-25 low byte first

The CRC covers every byte as sent from the start escape up to and including NN. The padding keeps the end on a
4-byte boundary counted from the start escape. Encoders differ on where they escape ``1b1b1b1b`` in the data:
libsml and this encoder on 4-byte boundaries only, smllib and sml-rs anywhere. The decoder reads both: a doubled
escape is one ``1b1b1b1b`` wherever it is; an end sequence off the 4-byte grid counts only when its CRC matches
(else it is data); a start sequence anywhere inside a frame means the frame was cut short (``truncated``), since a
meter that restarts mid-file is not aligned to the old file; any other escape on the grid is ``bad_escape``.

:class:`SmlStreamDecoder` takes chunks from a serial line (``receive_data``; ``b""`` means end of stream) and
hands out events (``next_event``): :class:`SmlFrame` for a good file, :class:`FrameFault` for a bad one (CRC,
truncation, bad escape, bad padding, too long) after which it resyncs on the next start sequence, or NEED_DATA.
Bytes outside frames are skipped and counted. With ``raise_faults=True`` a fault raises FrameError instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from amiflow.errors import FrameError

from .crc import crc16_kermit, crc16_x25, crc_variant

__all__ = [
    "ESCAPE",
    "MAX_FRAME_BYTES",
    "NEED_DATA",
    "START",
    "FrameFault",
    "SmlFrame",
    "SmlStreamDecoder",
    "encode_transport",
]

ESCAPE: Final = b"\x1b\x1b\x1b\x1b"
START: Final = ESCAPE + b"\x01\x01\x01\x01"
MAX_FRAME_BYTES: Final = 65_536  # meters send 200-1500 bytes; a lost end must not grow the buffer forever
NEED_DATA: Final = None
_AGAIN: Final = "again"  # internal: an escaped 1b1b1b1b was consumed, scan on
_VERSION1: Final = b"\x01\x01\x01\x01"


@dataclass(frozen=True, slots=True)
class SmlFrame:
    """One SML file: ``body`` the messages (unescaped, padding removed), ``raw`` as sent."""

    body: bytes
    raw: bytes
    crc_variant: str = "x25"

    @classmethod
    def from_bytes(cls, raw: bytes, *, crc_quirks: bool = True) -> SmlFrame:
        """Exactly one framed SML file; FrameError for anything else."""
        dec = SmlStreamDecoder(crc_quirks=crc_quirks, raise_faults=True)
        dec.receive_data(bytes(raw))
        dec.receive_data(b"")
        event = dec.next_event()
        if not isinstance(event, SmlFrame) or dec.skipped or dec.next_event() is not NEED_DATA:
            raise FrameError("SML transport: expected exactly one framed SML file (1b1b1b1b 01010101 ... 1a NN CRC)")
        return event

    @classmethod
    def for_body(cls, body: bytes) -> SmlFrame:
        """The frame a meter sends for ``body`` (the messages)."""
        return cls(bytes(body), encode_transport(body))

    def to_bytes(self) -> bytes:
        return self.raw


@dataclass(frozen=True, slots=True)
class FrameFault:
    """A frame that could not be used; ``code`` is one of bad_crc, truncated, bad_escape, bad_padding, too_long."""

    code: str
    detail: str
    raw: bytes

    def error(self) -> FrameError:
        return FrameError(f"SML transport: {self.detail}")


def encode_transport(body: bytes, *, crc: str = "x25") -> bytes:
    """Wrap ``body`` (SML messages) in the transport: escape aligned 1b1b1b1b groups, pad, end escape and CRC
    (``crc``: ``x25``, or a quirk variant of :mod:`.crc` to test a reader with)."""
    pad = -len(body) % 4
    data = bytes(body) + b"\x00" * pad
    out = bytearray(START)
    for i in range(0, len(data), 4):
        group = data[i : i + 4]
        out += group + ESCAPE if group == ESCAPE else group
    out += ESCAPE + bytes((0x1A, pad))
    if crc == "kermit":
        out += crc16_kermit(out).to_bytes(2, "big")
    else:
        out += crc16_x25(out).to_bytes(2, "big" if crc == "x25-msb" else "little")
    return bytes(out)


class SmlStreamDecoder:
    """Streaming SML transport decoder: feed bytes, pull :class:`SmlFrame` / :class:`FrameFault` / NEED_DATA.

    ``skipped`` counts bytes outside any frame (noise, a reader that attached mid-file), ``frames`` good files,
    ``faults`` bad ones. Memory stays bounded by ``max_frame_bytes``; every call returns without waiting.
    """

    def __init__(
        self, *, max_frame_bytes: int = MAX_FRAME_BYTES, crc_quirks: bool = True, raise_faults: bool = False
    ) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.crc_quirks = crc_quirks
        self.raise_faults = raise_faults
        self.skipped = 0
        self.frames = 0
        self.faults = 0
        self._buf = bytearray()
        self._eof = False
        self._in_frame = False
        self._pos = 0
        self._seg_start = 0
        self._segments: list[tuple[int, int]] = []

    def receive_data(self, chunk: bytes) -> None:
        """Add received bytes; an empty chunk marks the end of the stream (a pending partial frame is truncated)."""
        if chunk:
            self._buf += chunk
        else:
            self._eof = True

    def next_event(self) -> SmlFrame | FrameFault | None:
        while True:
            if not self._in_frame and not self._find_start():
                return NEED_DATA
            event = self._scan_frame()
            if isinstance(event, str):
                continue
            if isinstance(event, FrameFault):
                self.faults += 1
                if self.raise_faults:
                    raise event.error()
            elif isinstance(event, SmlFrame):
                self.frames += 1
            return event

    def _find_start(self) -> bool:
        buf = self._buf
        i = buf.find(START)
        if i < 0:
            keep = 0 if self._eof else min(len(buf), len(START) - 1)  # a start sequence may be split
            self.skipped += len(buf) - keep
            del buf[: len(buf) - keep]
            return False
        self.skipped += i
        del buf[:i]
        self._in_frame = True
        self._pos = self._seg_start = len(START)
        self._segments = []
        return True

    def _end_frame(self, consumed: int) -> None:
        del self._buf[:consumed]
        self._in_frame = False

    def _fault(self, code: str, detail: str, consumed: int, raw_end: int | None = None) -> FrameFault:
        raw = bytes(self._buf[: consumed if raw_end is None else raw_end])
        self._end_frame(consumed)
        return FrameFault(code, detail, raw)

    def _scan_frame(self) -> SmlFrame | FrameFault | str | None:
        buf = self._buf
        j = buf.find(ESCAPE, self._pos)
        if j < 0 or len(buf) < j + 8:
            self._pos = j if j >= 0 else max(self._seg_start, len(buf) - 3)  # an escape may be split
            if len(buf) > self.max_frame_bytes:
                return self._fault("too_long", f"no end sequence within {self.max_frame_bytes} bytes", 1, 64)
            if self._eof:
                return self._fault("truncated", f"stream ended inside a frame after {len(buf)} bytes", len(buf))
            return NEED_DATA
        nxt = bytes(buf[j + 4 : j + 8])
        if nxt == ESCAPE:  # an escaped 1b1b1b1b in the data
            self._segments.append((self._seg_start, j + 4))
            self._seg_start = self._pos = j + 8
            return _AGAIN
        if nxt == _VERSION1:
            return self._fault("truncated", f"a new start sequence after {j} bytes, before the end", j)
        aligned = j % 4 == 0
        if nxt[0] == 0x1A:
            return self._finish(j, nxt, aligned)
        if not aligned:  # 1b1b1b1b off the grid, unescaped by an aligned encoder: data
            self._pos = j + 1
            return _AGAIN
        return self._fault("bad_escape", f"escape sequence followed by {nxt.hex()} at byte {j}", j + 8)

    def _finish(self, j: int, trailer: bytes, aligned: bool) -> SmlFrame | FrameFault | str:
        buf = self._buf
        variant = crc_variant(memoryview(buf)[: j + 6], trailer[2:4], quirks=self.crc_quirks)
        if variant is None and not aligned:
            self._pos = j + 1
            return _AGAIN
        if variant is None:
            want, got = trailer[2:4].hex(), crc16_x25(memoryview(buf)[: j + 6]).to_bytes(2, "little").hex()
            return self._fault("bad_crc", f"CRC mismatch: frame says {want}, computed {got}", j + 8)
        body = b"".join(bytes(buf[a:b]) for a, b in self._segments) + bytes(buf[self._seg_start : j])
        pad = trailer[1]
        # DZG meters announce 4 padding bytes (and send four 00) when the data is already aligned
        if pad > len(body) or (pad > 3 and any(body[len(body) - pad :])):
            return self._fault("bad_padding", f"{pad} padding bytes announced in a {len(body)}-byte body", j + 8)
        raw = bytes(buf[: j + 8])
        self._end_frame(j + 8)
        return SmlFrame(body[: len(body) - pad], raw, variant)
