"""HDLC frames for DLMS/COSEM (IEC 62056-46, frame format type 3): layout, addresses, CRC and the stream framer.

Frame layout (no byte stuffing: the 11-bit length delimits the frame, so 0x7E may occur inside it)::

    7E | 1010 S LLL LLLLLLLL | dest addr | src addr | control | HCS (2) | info ... | FCS (2) | 7E
         format (2 bytes): type 0xA, S = segmentation, L = frame length without the flags
    without info:  7E | format | dest | src | control | FCS | 7E

Addresses are 1, 2 or 4 bytes of 7-bit groups whose last byte has LSB=1: client SAP 16 -> ``0x21``; server
upper (logical) 1 -> ``0x03``, with a lower (physical) address 0x11 -> ``02 23``. Control: I ``RRRPSSS0``,
RR ``RRRP0001``, RNR ``RRRP0101``, SNRM 0x93, UA 0x73, DISC 0x53, DM 0x1F, FRMR 0x97, UI 0x13 (P/F = 0x10).
HCS and FCS are CRC-16/X.25 (reflected 0x1021, init and xorout 0xFFFF), sent LSB first.

:class:`HdlcFramer` splits a byte stream into frames (``NEED_DATA`` when incomplete; a bad frame raises
:class:`~amiflow.errors.FrameError` after skipping to the next flag, so the next call resyncs). Pure.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from amiflow.errors import FrameError

__all__ = [
    "FLAG",
    "LLC_REQUEST",
    "LLC_RESPONSE",
    "NEED_DATA",
    "POLL",
    "FrameKind",
    "HdlcAddress",
    "HdlcFrame",
    "HdlcFramer",
    "crc16_x25",
]

FLAG: Final = 0x7E
LLC_REQUEST: Final = b"\xe6\xe6\x00"
LLC_RESPONSE: Final = b"\xe6\xe7\x00"
MAX_FRAME_LEN: Final = 0x7FF


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE: Final = _crc_table()


def crc16_x25(data: bytes | memoryview) -> int:
    """CRC-16/X.25 (the HDLC FCS): reflected polynomial 0x1021, init 0xFFFF, final xor 0xFFFF."""
    crc = 0xFFFF
    table = _CRC_TABLE
    for b in data:
        crc = (crc >> 8) ^ table[(crc ^ b) & 0xFF]
    return crc ^ 0xFFFF


def _crc_bytes(data: bytes | memoryview) -> bytes:
    return crc16_x25(data).to_bytes(2, "little")


@dataclass(frozen=True, slots=True)
class HdlcAddress:
    """An HDLC address: ``logical`` (upper / SAP), ``physical`` (lower, None for 1-byte addresses), wire ``size``."""

    logical: int
    physical: int | None = None
    size: int = 1

    def __post_init__(self) -> None:
        limit = 0x7F if self.size in (1, 2) else 0x3FFF
        if self.size not in (1, 2, 4) or (self.size == 1) != (self.physical is None):
            raise ValueError(f"HDLC address: size {self.size} with physical={self.physical}")
        if not 0 <= self.logical <= limit or not 0 <= (self.physical or 0) <= limit:
            raise ValueError(f"HDLC address out of range for {self.size} bytes: {self.logical}/{self.physical}")

    @classmethod
    def server(cls, logical: int = 1, physical: int | None = None) -> HdlcAddress:
        """The smallest server address holding ``logical``/``physical``."""
        if physical is None:
            return cls(logical)
        size = 2 if logical <= 0x7F and physical <= 0x7F else 4
        return cls(logical, physical, size)

    def to_bytes(self) -> bytes:
        if self.size == 1:
            return bytes(((self.logical << 1) | 1,))
        phys = self.physical or 0
        if self.size == 2:
            return bytes(((self.logical << 1) & 0xFE, (phys << 1) | 1))
        return bytes(
            (
                ((self.logical >> 7) << 1) & 0xFE,
                ((self.logical & 0x7F) << 1) & 0xFE,
                ((phys >> 7) << 1) & 0xFE,
                ((phys & 0x7F) << 1) | 1,
            )
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> HdlcAddress:
        g = [b >> 1 for b in raw]
        if len(raw) == 1:
            return cls(g[0])
        if len(raw) == 2:
            return cls(g[0], g[1], 2)
        if len(raw) == 4:
            return cls((g[0] << 7) | g[1], (g[2] << 7) | g[3], 4)
        raise FrameError(f"HDLC: address of {len(raw)} bytes (1, 2 or 4 allowed)")

    def __str__(self) -> str:
        return str(self.logical) if self.physical is None else f"{self.logical}/{self.physical}"


class FrameKind(enum.StrEnum):
    I = "I"  # noqa: E741 - the frame's name in the standard
    RR = "RR"
    RNR = "RNR"
    SNRM = "SNRM"
    UA = "UA"
    DISC = "DISC"
    DM = "DM"
    FRMR = "FRMR"
    UI = "UI"


_U_CODES: Final = {0x83: FrameKind.SNRM, 0x63: FrameKind.UA, 0x43: FrameKind.DISC, 0x0F: FrameKind.DM}
_U_CODES2: Final = {0x87: FrameKind.FRMR, 0x03: FrameKind.UI}
_U_CONTROL: Final = {v: k for k, v in {**_U_CODES, **_U_CODES2}.items()}
POLL: Final = 0x10


@dataclass(frozen=True, slots=True)
class HdlcFrame:
    """One HDLC frame; ``info`` is the raw information field (LLC header included when present)."""

    dest: HdlcAddress
    src: HdlcAddress
    control: int
    info: bytes = b""
    segmented: bool = False

    @property
    def kind(self) -> FrameKind:
        c = self.control
        if c & 1 == 0:
            return FrameKind.I
        if c & 3 == 1:
            s = (c >> 2) & 3
            if s in (0, 1):
                return FrameKind.RR if s == 0 else FrameKind.RNR
            raise FrameError(f"HDLC: REJ/SREJ control 0x{c:02X} is not used by DLMS")
        u = c & ~POLL & 0xFF
        kind = _U_CODES.get(u) or _U_CODES2.get(u)
        if kind is None:
            raise FrameError(f"HDLC: unknown control byte 0x{c:02X}")
        return kind

    @property
    def ns(self) -> int:
        return (self.control >> 1) & 7

    @property
    def nr(self) -> int:
        return (self.control >> 5) & 7

    @property
    def poll(self) -> bool:
        return bool(self.control & POLL)

    @classmethod
    def u(cls, kind: FrameKind, dest: HdlcAddress, src: HdlcAddress, info: bytes = b"") -> HdlcFrame:
        return cls(dest, src, _U_CONTROL[kind] | POLL, info)

    def to_bytes(self) -> bytes:
        head_len = 2 + len(self.dest.to_bytes()) + len(self.src.to_bytes()) + 1
        length = head_len + 2 + (len(self.info) + 2 if self.info else 0)
        if length > MAX_FRAME_LEN:
            raise ValueError(f"HDLC frame of {length} bytes exceeds {MAX_FRAME_LEN}")
        fmt = 0xA000 | (0x0800 if self.segmented else 0) | length
        head = fmt.to_bytes(2, "big") + self.dest.to_bytes() + self.src.to_bytes() + bytes((self.control,))
        if not self.info:
            return bytes((FLAG,)) + head + _crc_bytes(head) + bytes((FLAG,))
        body = head + _crc_bytes(head) + self.info
        return bytes((FLAG,)) + body + _crc_bytes(body) + bytes((FLAG,))

    @classmethod
    def from_bytes(cls, raw: bytes) -> HdlcFrame:
        """Parse one whole frame, flags included; FrameError when anything is wrong."""
        framer = HdlcFramer()
        framer.receive_data(raw)
        frame = framer.next_event()
        if not isinstance(frame, HdlcFrame) or framer.buffered not in (0, 1):
            raise FrameError("HDLC: not exactly one complete frame")
        return frame


def _parse_body(body: bytes) -> HdlcFrame:
    """``body`` = the bytes between the flags (format .. FCS), length already checked."""
    if crc16_x25(body[:-2]) != int.from_bytes(body[-2:], "little"):
        raise FrameError("HDLC: FCS mismatch")
    pos = 2
    addrs = []
    for _ in range(2):
        start = pos
        while pos < len(body) - 3 and not body[pos] & 1:
            pos += 1
        pos += 1
        addrs.append(HdlcAddress.from_bytes(body[start:pos]))
    if pos >= len(body) - 2:
        raise FrameError("HDLC: frame too short for its addresses")
    control = body[pos]
    pos += 1
    info = b""
    if pos < len(body) - 2:
        if len(body) - 2 - pos < 2:
            raise FrameError("HDLC: header check sequence truncated")
        if crc16_x25(body[:pos]) != int.from_bytes(body[pos : pos + 2], "little"):
            raise FrameError("HDLC: HCS mismatch")
        info = body[pos + 2 : -2]
    return HdlcFrame(addrs[0], addrs[1], control, info, bool(body[0] & 0x08))


class HdlcFramer:
    """Byte stream -> :class:`HdlcFrame` events; bounded (one frame at most 2049 bytes is ever kept)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def receive_data(self, data: bytes) -> None:
        self._buf += data

    def next_event(self) -> HdlcFrame | _NeedData:
        """The next frame, or NEED_DATA; FrameError for a bad frame (its bytes are dropped up to the next flag)."""
        buf = self._buf
        start = buf.find(FLAG)
        if start < 0:
            buf.clear()  # garbage without any flag: nothing to keep
            return NEED_DATA
        while start + 1 < len(buf) and buf[start + 1] == FLAG:
            start += 1  # empty frames / shared flags
        if start:
            del buf[:start]
        if len(buf) < 3:
            return NEED_DATA
        if buf[1] & 0xF0 != 0xA0:
            self._resync()
            raise FrameError("HDLC: bad frame format byte (not type 3)")
        length = ((buf[1] & 0x07) << 8) | buf[2]
        if length < 7:
            self._resync()
            raise FrameError(f"HDLC: frame length {length} too short")
        if len(buf) < length + 2:
            return NEED_DATA
        body = bytes(buf[1 : length + 1])
        if buf[length + 1] != FLAG:
            self._resync()
            raise FrameError("HDLC: no closing flag where the length says the frame ends")
        try:
            frame = _parse_body(body)
        except FrameError:
            self._resync()
            raise
        del buf[: length + 1]  # keep the closing flag: it may open the next frame
        return frame

    def _resync(self) -> None:
        nxt = self._buf.find(FLAG, 1)
        if nxt < 0:
            self._buf.clear()
        else:
            del self._buf[:nxt]
