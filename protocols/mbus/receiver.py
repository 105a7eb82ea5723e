"""Receiving wireless M-Bus: frames from a stick's serial port or from a line stream of hex (stdin, TCP), sans-I/O
plus one thin asyncio loop.

Sticks differ (CC1101/AMBER/IMST modules, rtl-wmbus, gateways), so two stream shapes are read:

- ``hex``: one frame per line as hex text (what rtl-wmbus, wmbusmeters' ``--logtelegrams`` style logs and most
  gateways print); spaces and colons between the bytes are ignored, and of a line with more fields (a
  timestamp, ``T1;...;``) the last run of at least 11 hex bytes is the frame, in format A, B or without CRCs;
- ``raw``: the bytes as a transparent stick sends them: L-prefixed frames in format A with their CRCs (or format
  B); on a CRC failure the receiver skips one byte and looks again (resync), counting ``skipped`` bytes.

:class:`WmbusReceiver` hands out :class:`~protocols.mbus.telegram.Telegram` events,
:class:`~protocols.mbus.link.FrameFault` for a line or frame that does not parse, or NEED_DATA;
:meth:`WmbusReceiver.next_frame` hands out the frames' bytes undecoded instead (for ingest, which decodes with
the key of each sender and keeps the raw frame); :func:`wmbus_frames` runs it over a
:class:`~protocols.transport.Link` until the link closes. Keys (a
:class:`~protocols.mbus.security.KeyRing`) are used for mode 5 and never logged.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

from amiflow.errors import ConfigError, FrameError, ReadTimeout, TransportError
from protocols.transport import Link

from .link import NEED_DATA, FrameFault
from .security import KeyRing
from .telegram import Telegram
from .wmbus import WmbusFrame, decode_wmbus

__all__ = ["RawFrame", "WmbusReceiver", "wmbus_frames"]

_TOKEN: Final = re.compile(rb"(?:[0-9a-fA-F]{2}){11,}")
MAX_LINE: Final = 4096


@dataclass(frozen=True, slots=True)
class RawFrame:
    """A frame's bytes as received, and (hex mode) the line it came on."""

    data: bytes
    line: bytes = b""


class WmbusReceiver:
    """Feed bytes (``receive_data``), pull telegrams (``next_event``); ``mode`` is ``hex`` or ``raw``."""

    def __init__(self, mode: str = "hex", *, keys: KeyRing | None = None) -> None:
        if mode not in ("hex", "raw"):
            raise ConfigError(f"wM-Bus receiver mode {mode!r}: expected hex or raw")
        self.mode = mode
        self.keys = keys
        self.frames = 0
        self.faults = 0
        self.skipped = 0
        self._buf = bytearray()
        self._eof = False

    def receive_data(self, chunk: bytes) -> None:
        if chunk:
            self._buf += chunk
        else:
            self._eof = True

    def next_event(self) -> Telegram | FrameFault | None:
        """The next decoded telegram (mode 5 decrypted with ``keys``), a fault, or NEED_DATA."""
        frame = self.next_frame()
        event = self._decode(frame.data) if isinstance(frame, RawFrame) else frame
        if isinstance(event, Telegram):
            self.frames += 1
        elif isinstance(event, FrameFault):
            self.faults += 1
        return event

    def next_frame(self) -> RawFrame | FrameFault | None:
        """The next frame as received (CRCs kept, nothing decoded: for a caller that decodes with keys it looks up
        per sender, or stores the frame raw), a fault, or NEED_DATA. In ``raw`` mode a frame is only cut where its
        CRCs hold; in ``hex`` mode a line is handed out whole (with its text: a log's time stamp), so a bad CRC
        shows when it is decoded."""
        return self._next_line() if self.mode == "hex" else self._next_raw()

    def _decode(self, raw: bytes, fmt: str = "auto") -> Telegram | FrameFault:
        try:
            return decode_wmbus(raw, fmt=fmt, keys=self.keys)
        except FrameError as exc:
            return FrameFault("bad_wmbus_frame", str(exc), raw)

    def _next_line(self) -> RawFrame | FrameFault | None:
        while True:
            end = self._buf.find(b"\n")
            if end < 0:
                if len(self._buf) > MAX_LINE:
                    raw = bytes(self._buf)
                    self._buf.clear()
                    return FrameFault("too_long", f"a line of more than {MAX_LINE} bytes", raw[:64])
                if not (self._eof and self._buf):
                    return NEED_DATA
                end = len(self._buf)
            line = bytes(self._buf[:end])
            del self._buf[: end + 1]
            tokens = _TOKEN.findall(line.replace(b" ", b"").replace(b":", b""))
            if not tokens:
                self.skipped += len(line) + 1
                continue
            return RawFrame(bytes.fromhex(tokens[-1].decode("ascii")), line)

    def _next_raw(self) -> RawFrame | FrameFault | None:
        while len(self._buf) >= 12:
            size_a = _length_a(self._buf[0])
            for size, fmt in ((size_a, "A"), (self._buf[0] + 1, "B")):
                if len(self._buf) < size:
                    continue
                raw = bytes(self._buf[:size])
                try:
                    WmbusFrame.from_bytes(raw, fmt)  # the CRCs hold: a frame starts here
                except FrameError:
                    continue
                del self._buf[:size]
                return RawFrame(raw)
            if len(self._buf) < size_a and not self._eof:
                return NEED_DATA
            self.skipped += 1
            del self._buf[:1]
        if self._eof and self._buf:
            self.skipped += len(self._buf)
            self._buf.clear()
        return NEED_DATA


def _length_a(length_field: int) -> int:
    rest = max(0, length_field - 9)
    return length_field + 1 + 2 * (1 + (rest + 15) // 16)


async def wmbus_frames(
    link: Link, *, mode: str = "hex", keys: KeyRing | None = None
) -> AsyncIterator[Telegram | FrameFault]:
    """Telegrams (and faults) from an open link until it closes; read timeouts just wait on (radio is quiet)."""
    receiver = WmbusReceiver(mode, keys=keys)
    while True:
        while (event := receiver.next_event()) is not None:
            yield event
        try:
            chunk = await link.read(4096, timeout_s=3600.0)
        except ReadTimeout:
            continue
        except TransportError:  # the peer closed the stream: flush what is left
            receiver.receive_data(b"")
            while (event := receiver.next_event()) is not None:
                yield event
            return
        receiver.receive_data(chunk)
