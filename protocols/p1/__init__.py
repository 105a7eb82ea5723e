"""DSMR P1 telegrams (Dutch Smart Meter Requirements 2.2 to 5.0.2, P1 companion standard).

A telegram is IEC 62056-21 style text that the meter pushes on its P1 port (DSMR 5: every second, 115200 8N1),
``/`` identification, data lines, ``!`` and a CRC; :mod:`.telegram` draws the layout.

- :mod:`.telegram`: the sans-I/O codec, one telegram's bytes to readings (:func:`parse_telegram`), CRC, timestamps;
- :mod:`.stream`: :class:`P1Splitter` (a serial stream to telegrams) and :func:`read_p1` over a transport link;
- :mod:`.build`: telegrams as a meter sends them (:func:`build_telegram`, :func:`dsmr5_telegram`), for the
  simulators and tests.
"""

from __future__ import annotations

from .build import build_telegram, dsmr5_telegram
from .stream import MAX_TELEGRAM_BYTES, NEED_DATA, P1Splitter, read_p1
from .telegram import P1Reading, crc16_arc, format_timestamp, parse_telegram, parse_timestamp

__all__ = [
    "MAX_TELEGRAM_BYTES",
    "NEED_DATA",
    "P1Reading",
    "P1Splitter",
    "build_telegram",
    "crc16_arc",
    "dsmr5_telegram",
    "format_timestamp",
    "parse_telegram",
    "parse_timestamp",
    "read_p1",
]
