"""A P1 port's byte stream to telegrams: the sans-I/O :class:`P1Splitter`, and :func:`read_p1` over a link.

DSMR 5 pushes a telegram every second at 115200 8N1 (DSMR 4: every 10 s); a reader may attach mid-telegram, and
noise or a truncated telegram must not stall the stream: the splitter resyncs on the next ``/``.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from typing import Final

from amiflow.types import Issue, ReadingBatch
from amiflow.uri import MeterUri

from .telegram import parse_telegram

__all__ = ["MAX_TELEGRAM_BYTES", "NEED_DATA", "P1Splitter", "read_p1"]

MAX_TELEGRAM_BYTES: Final = 16_384  # DSMR 5 telegrams are ~1 KB; the longest with text messages stay well below
NEED_DATA: Final = None
_TRAILER_RE = re.compile(rb"[0-9A-Fa-f]{0,4}\r?\n")
_TRAILER_PREFIX_RE = re.compile(rb"[0-9A-Fa-f]{0,4}\r?")


class P1Splitter:
    """Streaming sans-I/O splitter for a P1 serial port: ``receive_data(chunk)``, then ``next_event()`` until it
    returns NEED_DATA. Each event is one complete telegram (``/`` .. CRC CR LF) as bytes; bytes before a ``/`` are
    skipped (a reader that attached mid-telegram), and a telegram over ``max_bytes`` without its end is dropped so
    the splitter resyncs on the next ``/``. ``discarded`` counts skipped bytes, ``truncated`` the telegrams that
    began and never ended (a new ``/`` came first, or ``max_bytes`` passed); :attr:`pending` is what waits for
    more bytes.
    """

    def __init__(self, max_bytes: int = MAX_TELEGRAM_BYTES) -> None:
        self._buf = bytearray()
        self.max_bytes = max_bytes
        self.discarded = 0
        self.truncated = 0

    @property
    def pending(self) -> bytes:
        """The bytes of a telegram begun and not yet ended (empty when none is under way)."""
        return bytes(self._buf) if self._buf[:1] == b"/" else b""

    def receive_data(self, chunk: bytes) -> None:
        self._buf += chunk

    def next_event(self) -> bytes | None:
        while True:
            start = self._buf.find(b"/")
            if start < 0:
                self.discarded += len(self._buf)
                self._buf.clear()
                return NEED_DATA
            if start:
                self.discarded += start
                del self._buf[:start]
            bang = self._end_mark()
            nl = self._buf.find(b"\n", bang) if bang >= 0 else -1
            if nl < 0:
                if len(self._buf) > self.max_bytes:
                    self.truncated += 1
                    self._drop_first()
                    continue
                return NEED_DATA
            next_start = self._buf.find(b"/", 1, bang)
            if next_start > 0:  # a new telegram began before this one ended: the first was truncated
                self.truncated += 1
                self.discarded += next_start
                del self._buf[:next_start]
                continue
            telegram = bytes(self._buf[: nl + 1])
            del self._buf[: nl + 1]
            return telegram

    def _end_mark(self) -> int:
        """The first '!' followed by a CRC trailer (up to 4 hex digits, CR LF) or a prefix of one; -1 if none.
        A '!' followed by anything else is stray (noise or a truncated telegram) and is passed over."""
        bang = self._buf.find(b"!")
        while bang >= 0:
            tail = bytes(self._buf[bang + 1 : bang + 7])
            if _TRAILER_RE.match(tail) or _TRAILER_PREFIX_RE.fullmatch(tail):
                return bang
            bang = self._buf.find(b"!", bang + 1)
        return -1

    def _drop_first(self) -> None:
        self.discarded += 1
        del self._buf[:1]


async def read_p1(
    uri: MeterUri, *, timeout_s: float, meter: str | None = None
) -> AsyncIterator[tuple[bytes, ReadingBatch, list[Issue]]]:
    """Telegrams from a P1 port (``p1:///dev/ttyUSB0``, 115200 8N1 by default, or ``p1+tcp://HOST:PORT`` behind a
    serial-to-TCP bridge), each as (raw telegram, readings, issues), for as long as the caller iterates.

    ``meter`` (or the URI's ``?meter=``) names the readings, else the equipment id does; telegrams without a clock
    (DSMR 2.2/3.0) are stamped with the time they arrived. ``timeout_s`` bounds the
    silence between bytes (DSMR 5 sends every second, DSMR 4 every 10 s): ReadTimeout after it, TransportError when
    the bridge hangs up, ConnectError when the port cannot be opened, each naming the URI.
    """
    from protocols.transport import open_link  # the codec above stays importable without the I/O layer

    name = meter or uri.params.get("meter") or None
    splitter = P1Splitter()
    async with open_link(uri, timeout_s=timeout_s) as link:
        while True:
            splitter.receive_data(await link.read())
            while (telegram := splitter.next_event()) is not NEED_DATA:
                batch, issues = parse_telegram(telegram, meter=name, received_ts=int(time.time()))
                yield telegram, batch, issues
