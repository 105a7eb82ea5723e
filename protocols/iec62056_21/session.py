"""IEC 62056-21 mode C sessions, sans-I/O: the client side and the meter side of one readout.

::

    IecClient   idle -> identify (sign-on sent) -> option (identification received)
                     -> readout (option select sent) -> done (readout block received, BCC checked)
    IecMeter    any line -> SignOn | OptionSelect | Break, skipping the rest

Both take bytes with ``receive_data`` and give events from ``next_event`` (NEED_DATA until one is complete); neither
reads a clock nor does I/O, so the silence that resets a meter and the baud switch belong to the caller.
"""

from __future__ import annotations

import re
from typing import Final

from amiflow.errors import FrameError, ProtocolError

from .messages import (
    ACK,
    BAUD_RATES,
    ETX,
    SOH,
    STX,
    Break,
    Identification,
    OptionSelect,
    SignOn,
    bcc,
    build_option_select,
    build_sign_on,
    parse_identification,
)

__all__ = ["MAX_READOUT_BYTES", "NEED_DATA", "IecClient", "IecMeter"]

NEED_DATA: Final = None
MAX_READOUT_BYTES: Final = 65_536  # a full readout of a large meter is a few KB; more is a runaway stream
_MAX_LINE: Final = 128  # sign-on, identification and option lines are short; a longer one without CR LF is garbage


class IecClient:
    """The client side of one mode C readout.

    ``send_sign_on()`` -> bytes; feed what arrives with ``receive_data``; ``next_event()`` gives the
    :class:`Identification`, then (after ``send_option_select``) the readout block as bytes (STX .. BCC, checked:
    FrameError on a bad BCC or an oversized block), or NEED_DATA. Noise before ``/`` or STX is skipped (counted in
    ``discarded``) up to a limit, then FrameError.
    """

    def __init__(self, address: str = "", *, max_baudrate: int = 19200, max_bytes: int = MAX_READOUT_BYTES) -> None:
        self.address = address
        self.max_baudrate = max_baudrate
        self.max_bytes = max_bytes
        self.state = "idle"  # idle -> identify -> option -> readout -> done
        self.identification: Identification | None = None
        self.baudrate = 300
        self.discarded = 0
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received and not yet part of an event (a partial answer)."""
        return len(self._buf)

    def send_sign_on(self) -> bytes:
        self.state = "identify"
        self._buf.clear()
        return build_sign_on(self.address)

    def send_option_select(self) -> bytes:
        """``ACK 0 Z 0``: the meter's offered rate, capped at ``max_baudrate``; sets ``baudrate`` to switch to."""
        if self.state != "option" or self.identification is None:
            raise ProtocolError(f"option select in state {self.state}")
        offered = self.identification.baud_char if self.identification.baud_char in BAUD_RATES else "0"
        choice = max((c for c, b in BAUD_RATES.items() if b <= min(BAUD_RATES[offered], self.max_baudrate)), key=int)
        self.baudrate = BAUD_RATES[choice]
        self.state = "readout"
        return build_option_select(choice)

    def receive_data(self, chunk: bytes) -> None:
        self._buf += chunk

    def next_event(self) -> Identification | bytes | None:
        if self.state == "identify":
            return self._identification()
        if self.state == "readout":
            return self._readout()
        return NEED_DATA

    def _skip_to(self, marker: int, what: str) -> bool:
        start = self._buf.find(bytes([marker]))
        if start < 0:
            self.discarded += len(self._buf)
            self._buf.clear()
        elif start:
            self.discarded += start
            del self._buf[:start]
        if self.discarded > self.max_bytes:
            raise FrameError(f"no {what} in {self.discarded} bytes of noise")
        return start >= 0

    def _identification(self) -> Identification | None:
        while self._skip_to(ord("/"), "identification"):
            end = self._buf.find(b"\n")
            if end < 0:
                if len(self._buf) > _MAX_LINE:
                    self._drop(1)
                    continue
                return NEED_DATA
            line = bytes(self._buf[: end + 1])
            try:
                ident = parse_identification(line)
            except FrameError:
                if line.startswith(b"/?"):  # our own sign-on echoed back (a half-duplex optical head)
                    del self._buf[: end + 1]
                    continue
                self._drop(1)
                continue
            del self._buf[: end + 1]
            self.identification = ident
            self.state = "option"
            return ident
        return NEED_DATA

    def _readout(self) -> bytes | None:
        if not self._skip_to(STX, "readout (STX)"):
            return NEED_DATA
        etx = self._buf.find(bytes([ETX]))
        if etx < 0 or etx + 1 >= len(self._buf):
            if len(self._buf) > self.max_bytes:
                raise FrameError(f"readout longer than {self.max_bytes} bytes without ETX")
            return NEED_DATA
        block = bytes(self._buf[: etx + 2])
        del self._buf[: etx + 2]
        if bcc(block[1 : etx + 1]) != block[etx + 1]:
            raise FrameError(
                f"readout BCC mismatch: block says {block[etx + 1]:02X}, computed {bcc(block[1 : etx + 1]):02X}"
            )
        self.state = "done"
        return block

    def _drop(self, n: int) -> None:
        self.discarded += n
        del self._buf[:n]


class IecMeter:
    """The meter side: ``receive_data``, then ``next_event()`` -> :class:`SignOn` / :class:`OptionSelect` /
    :class:`Break` / NEED_DATA. Lines that are none of these are skipped (``discarded``); the caller answers with
    :func:`build_identification` and :func:`build_readout`, and resets with :meth:`reset` after silence."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.discarded = 0

    def reset(self) -> None:
        self._buf.clear()

    def receive_data(self, chunk: bytes) -> None:
        self._buf += chunk
        if len(self._buf) > 4 * _MAX_LINE:
            self.discarded += len(self._buf) - _MAX_LINE
            del self._buf[:-_MAX_LINE]

    def next_event(self) -> SignOn | OptionSelect | Break | None:
        while self._buf:
            if self._buf[0] == SOH:
                if len(self._buf) < 5:
                    return NEED_DATA
                frame = bytes(self._buf[:5])
                del self._buf[:5]
                if frame[1:4] == b"B0\x03" and bcc(frame[1:4]) == frame[4]:
                    return Break()
                self.discarded += 5
                continue
            end = self._buf.find(b"\n")
            if end < 0:
                return NEED_DATA
            line = bytes(self._buf[: end + 1]).rstrip(b"\r\n")
            del self._buf[: end + 1]
            m = re.fullmatch(rb".*/\?([ -~]{0,32})!", line)
            if m and b"!" not in m[1]:
                return SignOn(m[1].decode("ascii"))
            i = line.rfind(bytes([ACK]))
            if i >= 0 and len(line) - i == 4 and line[i + 1 :].isascii() and chr(line[i + 2]) in BAUD_RATES:
                opt = line[i + 1 :].decode("ascii")
                return OptionSelect(opt[0], opt[1], opt[2])
            self.discarded += len(line)
        return NEED_DATA
