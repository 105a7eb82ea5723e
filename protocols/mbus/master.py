"""The M-Bus master's protocol state (EN 13757-2 clause 5.5, EN 13757-3 clause 11), sans-I/O: no clocks, no sockets.

One request at a time per bus::

    IDLE --snd_nke / select--> WAIT_ACK --E5--> IDLE          SND_NKE  10 40 A CS 16 -> E5
    IDLE --req_ud2---------->  WAIT_RSP --RSP_UD--> IDLE      REQ_UD2  10 5B|7B A CS 16 -> 68 L L 68 08 A 72 ...
    WAIT_* --timeout()------>  IDLE (the caller retries with the same FCB: the slave repeats its last answer)

FCB (frame count bit, C bit 5, valid with FCV bit 4): after SND_NKE the slave expects FCB = 1; the master toggles
it after every answered REQ_UD2, so a repeated request (same FCB) makes the slave send the last telegram again and a
toggled one the next telegram of a multi-telegram readout. Secondary addressing selects a slave with SND_UD to
address 253 (FD) and CI 52: ``ident(4 BCD) manufacturer(2) version medium``, each nibble / byte F(F) a wildcard;
the selected slave answers E5 and then everything sent to address 253.

Events from :meth:`MasterState.next_event`: the :class:`~protocols.mbus.link.Ack` or RSP_UD
:class:`~protocols.mbus.link.LongFrame` that ends the wait, a :class:`~protocols.mbus.link.FrameFault` (bad
checksum: noise or a collision of two slaves), or NEED_DATA. Frames that do not answer the request (an echo of the
request from an adapter with local echo, another slave's frame) are skipped and counted in ``ignored``.
"""

from __future__ import annotations

import enum
from typing import Final

from amiflow.errors import ConfigError, ProtocolError

from .header import encode_manufacturer, ident_bytes
from .link import (
    ADDRESS_SELECTED,
    C_REQ_UD2,
    C_SND_NKE,
    C_SND_UD,
    FCB,
    NEED_DATA,
    Ack,
    FrameFault,
    LongFrame,
    MbusFrame,
    MbusStreamDecoder,
    ShortFrame,
)

__all__ = ["MasterState", "Phase", "Probe", "selection_frame"]

CI_SELECT: Final = 0x52


class Phase(enum.Enum):
    IDLE = "idle"
    WAIT_ACK = "wait_ack"
    WAIT_RSP = "wait_rsp"


class Probe(enum.Enum):
    """What a secondary selection found: no slave, exactly one, or several answering at once."""

    NOTHING = "nothing"
    SINGLE = "single"
    COLLISION = "collision"


# (phase, event) -> next phase: the whole state machine
_TRANSITIONS: Final = {
    (Phase.IDLE, "send_ack"): Phase.WAIT_ACK,
    (Phase.IDLE, "send_rsp"): Phase.WAIT_RSP,
    (Phase.WAIT_ACK, "ack"): Phase.IDLE,
    (Phase.WAIT_RSP, "rsp"): Phase.IDLE,
    (Phase.WAIT_ACK, "timeout"): Phase.IDLE,
    (Phase.WAIT_RSP, "timeout"): Phase.IDLE,
    (Phase.IDLE, "timeout"): Phase.IDLE,
}


def selection_frame(
    ident: str = "FFFFFFFF", manufacturer: str | None = None, version: int | None = None, medium: int | None = None
) -> LongFrame:
    """SND_UD to address 253 with CI 52: select by ident number (``F`` digits are wildcards) and optionally
    manufacturer, version and medium (None = wildcard)."""
    try:
        mfr = encode_manufacturer(manufacturer) if manufacturer else b"\xff\xff"
        ident_raw = ident_bytes(ident)
    except ValueError as exc:
        raise ConfigError(f"M-Bus secondary address: {exc}") from None
    tail = bytes((0xFF if version is None else version, 0xFF if medium is None else medium))
    return LongFrame(C_SND_UD, ADDRESS_SELECTED, CI_SELECT, ident_raw + mfr + tail)


class MasterState:
    """Requests out (bytes), answers in (``receive_data``), events out (``next_event``); FCB kept per address."""

    def __init__(self) -> None:
        self.phase = Phase.IDLE
        self.decoder = MbusStreamDecoder()
        self.ignored = 0
        self._fcb: dict[int, bool] = {}
        self._address = 0
        self._request = b""

    def _go(self, event: str) -> None:
        nxt = _TRANSITIONS.get((self.phase, event))
        if nxt is None:
            raise ProtocolError(f"M-Bus master: {event} while {self.phase.value} (one request at a time per bus)")
        self.phase = nxt

    def _send(self, frame: MbusFrame, event: str, address: int) -> bytes:
        self._go(event)
        self.decoder.clear()
        self._address = address
        self._request = frame.to_bytes()
        return self._request

    def snd_nke(self, address: int) -> bytes:
        """SND_NKE (link reset): the slave answers E5 and expects FCB = 1 next."""
        self._fcb[address] = True
        return self._send(ShortFrame(C_SND_NKE, address), "send_ack", address)

    def select(
        self, ident: str, manufacturer: str | None = None, version: int | None = None, medium: int | None = None
    ) -> bytes:
        """Select a slave by secondary address; it answers E5 (several matching slaves collide)."""
        self._fcb[ADDRESS_SELECTED] = True
        return self._send(selection_frame(ident, manufacturer, version, medium), "send_ack", ADDRESS_SELECTED)

    def req_ud2(self, address: int) -> bytes:
        """REQ_UD2 with the address's current FCB (unchanged until an answer arrives: a retry repeats it)."""
        fcb = self._fcb.get(address, True)
        return self._send(ShortFrame(C_REQ_UD2 | (FCB if fcb else 0), address), "send_rsp", address)

    def fcb(self, address: int) -> bool:
        return self._fcb.get(address, True)

    def receive_data(self, chunk: bytes) -> None:
        self.decoder.receive_data(chunk)

    def timeout(self) -> None:
        """The transport gave up waiting: back to IDLE; bytes left over are debris."""
        self._go("timeout")
        self.decoder.clear()

    def next_event(self) -> Ack | LongFrame | FrameFault | None:
        while True:
            event = self.decoder.next_event()
            if event is NEED_DATA or isinstance(event, FrameFault):
                return event
            if isinstance(event, Ack) and self.phase is Phase.WAIT_ACK:
                self._go("ack")
                return event
            if isinstance(event, LongFrame) and self.phase is Phase.WAIT_RSP and self._answers(event):
                self._go("rsp")
                self._fcb[self._address] = not self._fcb.get(self._address, True)
                return event
            self.ignored += 1  # an echo of our request, a stray E5, another slave's frame

    def _answers(self, frame: LongFrame) -> bool:
        if not frame.is_rsp_ud:
            return False
        # slaves answer address 253 and broadcasts with their own primary address
        return frame.a == self._address or self._address in (ADDRESS_SELECTED, 0xFE)
