"""HDLC framing for DLMS/COSEM (IEC 62056-46, frame format type 3).

Frame layout (no byte stuffing: the 11-bit length delimits the frame, so 0x7E may occur inside it)::

    7E | 1010 S LLL LLLLLLLL | dest addr | src addr | control | HCS (2) | info ... | FCS (2) | 7E
         format (2 bytes): type 0xA, S = segmentation, L = frame length without the flags
    without info:  7E | format | dest | src | control | FCS | 7E

Addresses are 1, 2 or 4 bytes of 7-bit groups whose last byte has LSB=1: client SAP 16 -> ``0x21``; server
upper (logical) 1 -> ``0x03``, with a lower (physical) address 0x11 -> ``02 23``. Control: I ``RRRPSSS0``,
RR ``RRRP0001``, RNR ``RRRP0101``, SNRM 0x93, UA 0x73, DISC 0x53, DM 0x1F, FRMR 0x97, UI 0x13 (P/F = 0x10).
HCS and FCS are CRC-16/X.25 (reflected 0x1021, init and xorout 0xFFFF), sent LSB first. The info field of I-frames
starts with the LLC header ``E6 E6 00`` (client to server) or ``E6 E7 00`` (server to client) in the first segment.
SNRM/UA carry the negotiation ``81 80 len {05 max_info_tx, 06 max_info_rx, 07 window_tx, 08 window_rx}``.

:class:`HdlcFramer` splits a byte stream into frames (``NEED_DATA`` when incomplete; a bad frame raises
:class:`~amiflow.errors.FrameError` after skipping to the next flag, so the next call resyncs).
:class:`HdlcConnection` adds the link state: SNRM/UA/DISC, send and receive sequence numbers with window 1,
segmentation and reassembly with RR acknowledgements, and retransmission of the last I-frame. Sans-I/O, no clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from amiflow.errors import FrameError, ProtocolError

__all__ = [
    "LLC_REQUEST",
    "LLC_RESPONSE",
    "NEED_DATA",
    "Connected",
    "Data",
    "Disconnected",
    "FrameKind",
    "HdlcAddress",
    "HdlcConnection",
    "HdlcFrame",
    "HdlcFramer",
    "HdlcParameters",
    "HdlcState",
    "Role",
    "crc16_x25",
]

FLAG: Final = 0x7E
LLC_REQUEST: Final = b"\xe6\xe6\x00"
LLC_RESPONSE: Final = b"\xe6\xe7\x00"
MAX_FRAME_LEN: Final = 0x7FF
MAX_APDU: Final = 0x10000


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


@dataclass(frozen=True, slots=True)
class HdlcParameters:
    """Negotiated link parameters (from the sender's point of view: what it transmits / can receive)."""

    max_info_tx: int = 128
    max_info_rx: int = 128
    window_tx: int = 1
    window_rx: int = 1

    def to_bytes(self) -> bytes:
        body = bytearray()
        for pid, value, size in (
            (0x05, self.max_info_tx, 1 if self.max_info_tx < 256 else 2),
            (0x06, self.max_info_rx, 1 if self.max_info_rx < 256 else 2),
            (0x07, self.window_tx, 4),
            (0x08, self.window_rx, 4),
        ):
            body += bytes((pid, size)) + value.to_bytes(size, "big")
        return bytes((0x81, 0x80, len(body))) + body

    @classmethod
    def from_bytes(cls, raw: bytes) -> HdlcParameters:
        if not raw:
            return cls()
        if len(raw) < 3 or raw[0] != 0x81 or raw[1] != 0x80 or raw[2] != len(raw) - 3:
            raise FrameError("HDLC: bad parameter negotiation field")
        values = {0x05: 128, 0x06: 128, 0x07: 1, 0x08: 1}
        pos = 3
        while pos < len(raw):
            if pos + 2 > len(raw) or pos + 2 + raw[pos + 1] > len(raw) or raw[pos + 1] > 4:
                raise FrameError("HDLC: parameter negotiation field truncated")
            pid, size = raw[pos], raw[pos + 1]
            values[pid] = int.from_bytes(raw[pos + 2 : pos + 2 + size], "big")
            pos += 2 + size
        if not 32 <= values[0x05] <= 2030 or not 32 <= values[0x06] <= 2030:
            raise FrameError("HDLC: negotiated max info field outside 32..2030")
        return cls(values[0x05], values[0x06], values[0x07], values[0x08])


class Role(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


class HdlcState(enum.Enum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTING = "disconnecting"


@dataclass(frozen=True, slots=True)
class Connected:
    """The link is up with these parameters (ours, after negotiation)."""

    params: HdlcParameters


@dataclass(frozen=True, slots=True)
class Data:
    """A complete APDU (reassembled, LLC header removed)."""

    apdu: bytes


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The link went down (DISC, UA to our DISC, DM or FRMR); ``reason`` names the frame."""

    reason: str


Event = Connected | Data | Disconnected

# state -> frame kinds accepted in it
_ACCEPT: Final = {
    HdlcState.DISCONNECTED: {FrameKind.SNRM, FrameKind.DISC, FrameKind.DM, FrameKind.UA},
    HdlcState.CONNECTING: {FrameKind.UA, FrameKind.DM, FrameKind.FRMR},
    HdlcState.CONNECTED: {
        FrameKind.I,
        FrameKind.RR,
        FrameKind.RNR,
        FrameKind.DISC,
        FrameKind.SNRM,
        FrameKind.DM,
        FrameKind.FRMR,
        FrameKind.UI,
    },
    HdlcState.DISCONNECTING: {FrameKind.UA, FrameKind.DM, FrameKind.I, FrameKind.RR, FrameKind.FRMR},
}


class HdlcConnection:
    """The HDLC link state of one client or server: feed bytes, pull events, send APDUs.

    ``send`` returns the bytes to transmit now; frames the machine makes on its own (RR acknowledgements, the next
    segment once the peer acknowledged the previous one, UA/DM answers on the server side) are collected by
    :meth:`data_to_send`, which the I/O layer drains after every :meth:`next_event`.
    """

    def __init__(
        self,
        role: Role,
        *,
        client: HdlcAddress,
        server: HdlcAddress,
        params: HdlcParameters | None = None,
    ) -> None:
        self.role = role
        self.state = HdlcState.DISCONNECTED
        self._local, self._peer = (client, server) if role is Role.CLIENT else (server, client)
        self._proposed = params or HdlcParameters()
        self.params = self._proposed
        self._framer = HdlcFramer()
        self._vs = 0
        self._vr = 0
        self._out = bytearray()
        self._pending: list[bytes] = []  # segments still to send (window 1: after each RR)
        self._last_sent: list[bytes] = []  # the last I-frame(s) of the current message, for retransmission
        self._rx = bytearray()
        self.frames_rejected = 0

    @property
    def peer(self) -> HdlcAddress:
        """The other station's address (for a server: the client that sent the last SNRM)."""
        return self._peer

    # -- input ---------------------------------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        self._framer.receive_data(data)

    def next_event(self) -> Event | _NeedData:
        """The next link event; FrameError for a malformed frame (the stream resyncs), ProtocolError for a frame
        that is valid but wrong in this state."""
        while True:
            frame = self._framer.next_event()
            if isinstance(frame, _NeedData):
                return frame
            if frame.dest != self._local:
                continue  # another station's frame on a shared line
            event = self._handle(frame)
            if event is not None:
                return event

    def _handle(self, frame: HdlcFrame) -> Event | None:
        kind = frame.kind
        if kind not in _ACCEPT[self.state]:
            if self.role is Role.SERVER and self.state is HdlcState.DISCONNECTED:
                self._emit(HdlcFrame.u(FrameKind.DM, self._peer, self._local))
                return None
            raise ProtocolError(f"HDLC: unexpected {kind} frame in state {self.state.value}")
        if kind is FrameKind.SNRM:
            return self._on_snrm(frame)
        if kind is FrameKind.UA:
            if self.state is HdlcState.CONNECTING:
                theirs = HdlcParameters.from_bytes(frame.info)
                self.params = HdlcParameters(
                    min(self._proposed.max_info_tx, theirs.max_info_rx),
                    min(self._proposed.max_info_rx, theirs.max_info_tx),
                    1,
                    1,
                )
                self.state = HdlcState.CONNECTED
                return Connected(self.params)
            self.state = HdlcState.DISCONNECTED
            self._reset()
            return Disconnected("UA")
        if kind in (FrameKind.DISC, FrameKind.DM, FrameKind.FRMR):
            if kind is FrameKind.DISC:
                self._emit(HdlcFrame.u(FrameKind.UA, self._peer, self._local))
            self.state = HdlcState.DISCONNECTED
            self._reset()
            return Disconnected(kind.value)
        if kind in (FrameKind.RR, FrameKind.RNR):
            if kind is FrameKind.RR and self._pending and frame.nr == self._vs:
                self._send_next_segment()
            return None
        if kind is FrameKind.UI:
            return Data(_strip_llc(frame.info)) if frame.info else None
        return self._on_i(frame)

    def _on_snrm(self, frame: HdlcFrame) -> Event | None:
        if self.role is Role.CLIENT:
            raise ProtocolError("HDLC: a server sent SNRM")
        self._peer = frame.src  # a server serves whichever client SAP connects
        theirs = HdlcParameters.from_bytes(frame.info)
        self.params = HdlcParameters(
            min(self._proposed.max_info_tx, theirs.max_info_rx),
            min(self._proposed.max_info_rx, theirs.max_info_tx),
            1,
            1,
        )
        self._reset()
        self.state = HdlcState.CONNECTED
        self._emit(HdlcFrame.u(FrameKind.UA, self._peer, self._local, self.params.to_bytes()))
        return Connected(self.params)

    def _on_i(self, frame: HdlcFrame) -> Event | None:
        if frame.ns != self._vr:
            if frame.ns == (self._vr - 1) % 8:
                if self.role is Role.SERVER:
                    for raw in self._last_sent:  # the client repeated its request: our answer was lost
                        self._out += raw
                elif frame.segmented:  # our RR was lost: acknowledge the repeated segment again
                    self._emit(HdlcFrame(self._peer, self._local, (self._vr << 5) | POLL | 0x01))
                return None
            raise ProtocolError(f"HDLC: I-frame N(S)={frame.ns}, expected {self._vr}")
        self._vr = (self._vr + 1) % 8
        self._pending.clear()
        if len(self._rx) + len(frame.info) > MAX_APDU:
            raise FrameError("HDLC: reassembled APDU too large")
        self._rx += frame.info
        if frame.segmented:
            self._emit(HdlcFrame(self._peer, self._local, (self._vr << 5) | POLL | 0x01))
            return None
        apdu = bytes(self._rx)
        self._rx.clear()
        return Data(_strip_llc(apdu))

    # -- output --------------------------------------------------------------------------------------------------
    def connect(self) -> bytes:
        """SNRM (client): starts the link; wait for :class:`Connected`."""
        if self.role is not Role.CLIENT:
            raise ProtocolError("HDLC: only a client sends SNRM")
        self._reset()
        self.state = HdlcState.CONNECTING
        info = b"" if self._proposed == HdlcParameters() else self._proposed.to_bytes()
        return HdlcFrame.u(FrameKind.SNRM, self._peer, self._local, info).to_bytes()

    def disconnect(self) -> bytes:
        """DISC (client): wait for :class:`Disconnected` (UA or DM)."""
        self.state = HdlcState.DISCONNECTING
        return HdlcFrame.u(FrameKind.DISC, self._peer, self._local).to_bytes()

    def send(self, apdu: bytes) -> bytes:
        """An APDU as I-frame(s) with the LLC header; returns the first segment (the rest follow each RR)."""
        if self.state is not HdlcState.CONNECTED:
            raise ProtocolError(f"HDLC: cannot send data in state {self.state.value}")
        info = (LLC_REQUEST if self.role is Role.CLIENT else LLC_RESPONSE) + apdu
        size = self.params.max_info_tx
        chunks = [info[i : i + size] for i in range(0, len(info), size)] or [b""]
        self._pending = [c for c in chunks]
        self._last_sent = []
        return self._next_segment()

    def retransmit(self) -> bytes:
        """The last I-frame again, same N(S) (after a timeout: the peer answers again or acknowledges)."""
        return self._last_sent[-1] if self._last_sent else b""

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def _next_segment(self) -> bytes:
        chunk = self._pending.pop(0)
        control = (self._vr << 5) | POLL | (self._vs << 1)
        raw = HdlcFrame(self._peer, self._local, control, chunk, segmented=bool(self._pending)).to_bytes()
        self._vs = (self._vs + 1) % 8
        self._last_sent = [raw]
        return raw

    def _send_next_segment(self) -> None:
        self._out += self._next_segment()

    def _emit(self, frame: HdlcFrame) -> None:
        self._out += frame.to_bytes()

    def _reset(self) -> None:
        self._vs = self._vr = 0
        self._pending.clear()
        self._last_sent = []
        self._rx.clear()


def _strip_llc(info: bytes) -> bytes:
    if info[:3] in (LLC_REQUEST, LLC_RESPONSE):
        return info[3:]
    raise FrameError(f"HDLC: information field without the LLC header E6 E6/E7 00 (starts {info[:3].hex()})")
