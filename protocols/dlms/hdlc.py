"""HDLC link layer for DLMS/COSEM (IEC 62056-46, frame format type 3); frames themselves: :mod:`.hdlc_frame`.

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

from .hdlc_frame import (
    LLC_REQUEST,
    LLC_RESPONSE,
    NEED_DATA,
    POLL,
    FrameKind,
    HdlcAddress,
    HdlcFrame,
    HdlcFramer,
    _NeedData,
    crc16_x25,
)

MAX_APDU: Final = 0x10000  # bound of a reassembled, segmented APDU

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
