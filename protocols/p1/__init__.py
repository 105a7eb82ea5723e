"""DSMR P1 telegrams (Dutch Smart Meter Requirements 2.2 to 5.0.2, P1 companion standard; Belgian e-MUCS).

A telegram is IEC 62056-21 style text that the meter pushes on its P1 port (DSMR 5: every second, 115200 8N1),
``/`` identification, data lines, ``!`` and a CRC; :mod:`.frame` draws the layout.

- :mod:`.frame`: finding a telegram, CRC-16/ARC and the CRC rule of each DSMR version;
- :mod:`.lines`: data lines and their OBIS addresses (F group, short and letter forms, continuation lines);
- :mod:`.objects`: the table of DSMR and e-MUCS objects and their value shapes (logs, peaks, M-Bus);
- :mod:`.clock`: DSMR timestamps;
- :mod:`.telegram`: the sans-I/O codec, one telegram's bytes to readings (:func:`parse_telegram`) or to
  everything it says (:func:`decode_telegram`);
- :mod:`.stream`: :class:`P1Splitter` (a serial stream to telegrams) and :func:`read_p1` over a transport link;
- :mod:`.build`: telegrams as a meter sends them (:func:`build_telegram`, :func:`dsmr5_telegram`), for the
  simulators and tests.
"""

from __future__ import annotations

from .build import build_telegram, dsmr5_telegram
from .clock import format_timestamp, parse_timestamp
from .describe import describe_capture
from .frame import crc16_arc
from .objects import DemandPeak, PowerFailure
from .stream import MAX_TELEGRAM_BYTES, NEED_DATA, P1Splitter, read_p1
from .telegram import MbusDevice, P1Reading, P1Telegram, decode_telegram, is_informational, parse_telegram

__all__ = [
    "MAX_TELEGRAM_BYTES",
    "NEED_DATA",
    "DemandPeak",
    "MbusDevice",
    "P1Reading",
    "P1Splitter",
    "P1Telegram",
    "PowerFailure",
    "build_telegram",
    "crc16_arc",
    "decode_telegram",
    "describe_capture",
    "dsmr5_telegram",
    "format_timestamp",
    "is_informational",
    "parse_telegram",
    "parse_timestamp",
    "read_p1",
]
