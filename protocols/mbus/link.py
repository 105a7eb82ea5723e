"""M-Bus link layer (EN 13757-2 clause 5, the FT1.2 frame format of IEC 60870-5-2), sans-I/O.

Four frame shapes travel on the two-wire bus (2400 Bd 8E1 by default, 300-38400 Bd) and on TCP gateways::

    E5                                    single character: ACK of SND_NKE / SND_UD / a selection
    10 C A CS 16                          short frame: SND_NKE, REQ_UD1/2
    68 L L 68 C A CI CS 16                control frame (L = 3): no user data
    68 L L 68 C A CI <data> CS 16         long frame (L = 3 + len(data), at most 255): SND_UD, RSP_UD

``CS`` is the arithmetic sum modulo 256 of ``C A CI data``. C field (master to slave): ``0 PRM FCB FCV F3..F0``;
SND_NKE 0x40, SND_UD 0x53/0x73, REQ_UD2 0x5B/0x7B, REQ_UD1 0x5A/0x7A (FCB is bit 5, FCV bit 4); slave to master
RSP_UD 0x08 (bit 5 ACD and bit 4 DFC may be set: 0x18, 0x28, 0x38). Addresses: 0 unconfigured, 1-250 primary,
253 (0xFD) the selected slave of secondary addressing, 254 broadcast with answer, 255 broadcast without answer.

:class:`MbusStreamDecoder` takes chunks (``receive_data``; ``b""`` = end of stream) and hands out events
(``next_event``): :class:`Ack`, :class:`ShortFrame`, :class:`LongFrame` (control frames are long frames with no
data), :class:`FrameFault` for a frame that started but is bad (checksum, stop byte, length fields) after which it
resyncs one byte further, or NEED_DATA. Bytes that start no frame (line noise, a collision's debris) are skipped
and counted. ``from_bytes`` of each frame is the strict entry point: exactly one good frame or FrameError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from amiflow.errors import FrameError

__all__ = [
    "ACK",
    "ADDRESS_BROADCAST",
    "ADDRESS_BROADCAST_NO_REPLY",
    "ADDRESS_SELECTED",
    "C_REQ_UD2",
    "C_RSP_UD",
    "C_SND_NKE",
    "C_SND_UD",
    "FCB",
    "NEED_DATA",
    "Ack",
    "FrameFault",
    "LongFrame",
    "MbusFrame",
    "MbusStreamDecoder",
    "ShortFrame",
    "checksum",
    "parse_frame",
]

ACK: Final = 0xE5
C_SND_NKE: Final = 0x40
C_SND_UD: Final = 0x53
C_REQ_UD2: Final = 0x5B
C_RSP_UD: Final = 0x08
FCB: Final = 0x20
ADDRESS_SELECTED: Final = 0xFD
ADDRESS_BROADCAST: Final = 0xFE
ADDRESS_BROADCAST_NO_REPLY: Final = 0xFF
NEED_DATA: Final = None
MAX_DATA: Final = 252  # L <= 255 counts C, A and CI too


def checksum(data: bytes | bytearray | memoryview) -> int:
    """The FT1.2 checksum: the sum of the bytes modulo 256."""
    return sum(data) & 0xFF


@dataclass(frozen=True, slots=True)
class Ack:
    """The single character E5."""

    def to_bytes(self) -> bytes:
        return b"\xe5"

    @classmethod
    def from_bytes(cls, raw: bytes) -> Ack:
        if bytes(raw) != b"\xe5":
            raise FrameError(f"M-Bus: expected the single character E5, got {bytes(raw)[:8].hex()}")
        return cls()


@dataclass(frozen=True, slots=True)
class ShortFrame:
    """``10 C A CS 16``: SND_NKE (C 0x40) or REQ_UD2 (0x5B / 0x7B with FCB) to address ``a``."""

    c: int
    a: int

    def to_bytes(self) -> bytes:
        return bytes((0x10, self.c, self.a, (self.c + self.a) & 0xFF, 0x16))

    @classmethod
    def from_bytes(cls, raw: bytes) -> ShortFrame:
        frame = parse_frame(raw)
        if not isinstance(frame, ShortFrame):
            raise FrameError("M-Bus: expected a short frame 10 C A CS 16")
        return frame

    @property
    def fcb(self) -> bool:
        return bool(self.c & FCB)


@dataclass(frozen=True, slots=True)
class LongFrame:
    """``68 L L 68 C A CI data CS 16``; a control frame is a long frame with empty ``data``."""

    c: int
    a: int
    ci: int
    data: bytes = b""

    def __post_init__(self) -> None:
        if len(self.data) > MAX_DATA:
            raise FrameError(f"M-Bus long frame: {len(self.data)} data bytes, at most {MAX_DATA} fit")

    def to_bytes(self) -> bytes:
        body = bytes((self.c & 0xFF, self.a & 0xFF, self.ci & 0xFF)) + self.data
        n = len(body)
        return bytes((0x68, n, n, 0x68)) + body + bytes((checksum(body), 0x16))

    @classmethod
    def from_bytes(cls, raw: bytes) -> LongFrame:
        frame = parse_frame(raw)
        if not isinstance(frame, LongFrame):
            raise FrameError("M-Bus: expected a long frame 68 L L 68 ... 16")
        return frame

    @property
    def is_rsp_ud(self) -> bool:
        return self.c & 0xCF == C_RSP_UD


MbusFrame = Ack | ShortFrame | LongFrame


@dataclass(frozen=True, slots=True)
class FrameFault:
    """A frame that started but could not be used: ``bad_checksum``, ``bad_stop``, ``bad_length`` or
    ``truncated`` (the stream ended inside it)."""

    code: str
    detail: str
    raw: bytes

    def error(self) -> FrameError:
        return FrameError(f"M-Bus link layer: {self.detail}")


def parse_frame(raw: bytes) -> MbusFrame:
    """Exactly one frame; FrameError for anything else (noise, a bad checksum, trailing bytes)."""
    dec = MbusStreamDecoder(raise_faults=True)
    dec.receive_data(bytes(raw))
    dec.receive_data(b"")
    event = dec.next_event()
    if event is NEED_DATA or isinstance(event, FrameFault) or dec.skipped or dec.next_event() is not NEED_DATA:
        raise FrameError(f"M-Bus: expected exactly one frame, got {bytes(raw)[:16].hex()}")
    return event


class MbusStreamDecoder:
    """Streaming link-layer decoder: feed bytes, pull frames, :class:`FrameFault` or NEED_DATA; never waits.

    ``skipped`` counts bytes outside frames, ``frames`` good frames, ``faults`` bad ones. With ``raise_faults``
    a fault raises FrameError instead of being returned.
    """

    def __init__(self, *, raise_faults: bool = False) -> None:
        self.raise_faults = raise_faults
        self.skipped = 0
        self.frames = 0
        self.faults = 0
        self._buf = bytearray()
        self._eof = False

    def receive_data(self, chunk: bytes) -> None:
        """Add received bytes; an empty chunk marks the end of the stream."""
        if chunk:
            self._buf += chunk
        else:
            self._eof = True

    def clear(self) -> None:
        """Forget buffered bytes (before a new request: late debris of an old answer must not count)."""
        self.skipped += len(self._buf)
        self._buf.clear()
        self._eof = False

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def next_event(self) -> MbusFrame | FrameFault | None:
        while self._buf:
            event = self._scan()
            if event is _SKIP:
                self.skipped += 1
                del self._buf[:1]
                continue
            if isinstance(event, FrameFault):
                self.faults += 1
                if self.raise_faults:
                    raise event.error()
                return event
            if event is _WAIT:
                return NEED_DATA
            self.frames += 1
            return event  # type: ignore[return-value]
        return NEED_DATA

    def _scan(self) -> object:
        buf = self._buf
        start = buf[0]
        if start == ACK:
            del buf[:1]
            return Ack()
        if start == 0x10:
            return self._short()
        if start == 0x68:
            return self._long()
        return _SKIP

    def _need(self, n: int) -> object:
        """None when ``n`` bytes are buffered, else _WAIT (more may come) or a ``truncated`` fault (end of stream)."""
        if len(self._buf) >= n:
            return None
        if self._eof:
            raw = bytes(self._buf)
            self._buf.clear()
            return FrameFault("truncated", f"the stream ended {n - len(raw)} bytes before the frame's end", raw)
        return _WAIT

    def _fault(self, code: str, detail: str, n: int) -> FrameFault:
        raw = bytes(self._buf[:n])
        del self._buf[:1]  # resync one byte on: the start byte may have been data of noise
        return FrameFault(code, detail, raw)

    def _short(self) -> object:
        need = self._need(5)
        if need is not None:
            return need
        c, a, cs, stop = self._buf[1:5]
        if stop != 0x16:
            return self._fault("bad_stop", f"short frame stop byte {stop:02x}, expected 16", 5)
        if (c + a) & 0xFF != cs:
            return self._fault("bad_checksum", f"short frame checksum {cs:02x}, computed {(c + a) & 0xFF:02x}", 5)
        del self._buf[:5]
        return ShortFrame(c, a)

    def _long(self) -> object:
        need = self._need(4)
        if need is not None:
            return need
        buf = self._buf
        n = buf[1]
        if buf[2] != n or buf[3] != 0x68 or n < 3:
            return self._fault("bad_length", f"long frame header {bytes(buf[:4]).hex()}: L fields differ", 4)
        need = self._need(n + 6)
        if need is not None:
            return need
        body = bytes(buf[4 : 4 + n])
        cs, stop = buf[4 + n], buf[5 + n]
        if stop != 0x16:
            return self._fault("bad_stop", f"long frame stop byte {stop:02x}, expected 16", n + 6)
        if checksum(body) != cs:
            return self._fault("bad_checksum", f"long frame checksum {cs:02x}, computed {checksum(body):02x}", n + 6)
        del buf[: n + 6]
        return LongFrame(body[0], body[1], body[2], body[3:])


_SKIP: Final = object()
_WAIT: Final = object()
