"""IEC 62056-21 mode C (the optical port, "FLAG" readout): sans-I/O client and meter sides, and an async client.

The exchange (PROTOCOLS.md)::

    client  /?[address]!CR LF                       at 300 Bd 7E1
    meter   /XXXZ[\\W]ident CR LF                     XXX manufacturer, Z the highest baud rate it offers
    client  ACK V Z Y CR LF                          V '0' normal protocol, Z the baud chosen, Y '0' data readout
            (both sides switch to the baud rate of Z)
    meter   STX data-lines ! CR LF ETX BCC           BCC: XOR of every byte after STX up to and including ETX

- :mod:`.messages`: the sign-on, identification, option-select and break messages, the BCC;
- :mod:`.readout`: the data lines of a readout block (OBIS addresses, values, units, the meter clock) to readings;
- :mod:`.session`: the sans-I/O state machines :class:`IecClient` and :class:`IecMeter`
  (``receive_data`` / ``next_event`` / ``send_*``);
- :mod:`.reader`: the I/O, :func:`read_iec62056_21` over a transport link.
"""

from __future__ import annotations

from .messages import (
    ACK,
    BAUD_RATES,
    ETX,
    NAK,
    SOH,
    STX,
    Break,
    Identification,
    OptionSelect,
    SignOn,
    bcc,
    build_break,
    build_identification,
    build_option_select,
    build_readout,
    build_sign_on,
    parse_identification,
)
from .reader import Readout, read_iec62056_21
from .readout import DataSet, ParsedReadout, parse_data_line, parse_readout
from .session import MAX_READOUT_BYTES, NEED_DATA, IecClient, IecMeter

__all__ = [
    "ACK",
    "BAUD_RATES",
    "ETX",
    "MAX_READOUT_BYTES",
    "NAK",
    "NEED_DATA",
    "SOH",
    "STX",
    "Break",
    "DataSet",
    "Identification",
    "IecClient",
    "IecMeter",
    "OptionSelect",
    "ParsedReadout",
    "Readout",
    "SignOn",
    "bcc",
    "build_break",
    "build_identification",
    "build_option_select",
    "build_readout",
    "build_sign_on",
    "parse_data_line",
    "parse_identification",
    "parse_readout",
    "read_iec62056_21",
]
