"""IEC 62056-21 mode C messages: the bytes of each step of a readout, and the block check character.

::

    sign-on          / ? [device address] ! CR LF          the client, at 300 Bd 7E1
    identification   / X X X Z [\\W] ident CR LF            XXX manufacturer, Z the highest baud rate offered
    option select    ACK V Z Y CR LF                       V protocol ('0' normal), Z baud, Y mode ('0' readout)
    readout          STX data-lines ! CR LF ETX BCC        see :mod:`.readout`
    break            SOH B 0 ETX BCC                       the client ends the session

BCC: XOR of every byte after STX (or SOH) up to and including ETX. Pure code: no I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from amiflow.errors import ConfigError, FrameError

__all__ = [
    "ACK",
    "BAUD_RATES",
    "ETX",
    "NAK",
    "SOH",
    "STX",
    "Break",
    "Identification",
    "OptionSelect",
    "SignOn",
    "bcc",
    "build_break",
    "build_identification",
    "build_option_select",
    "build_readout",
    "build_sign_on",
    "parse_identification",
]

SOH: Final = 0x01
STX: Final = 0x02
ETX: Final = 0x03
ACK: Final = 0x06
NAK: Final = 0x15
BAUD_RATES: Final[dict[str, int]] = {
    "0": 300,
    "1": 600,
    "2": 1200,
    "3": 2400,
    "4": 4800,
    "5": 9600,
    "6": 19200,
}


def bcc(data: bytes) -> int:
    """Block check character: XOR of all bytes (give it everything after STX/SOH up to and including ETX)."""
    value = 0
    for b in data:
        value ^= b
    return value


@dataclass(frozen=True, slots=True)
class Identification:
    """The meter's ``/XXXZ[\\W]ident`` line: manufacturer (3 letters), baud char, ident text, the whole line."""

    manufacturer: str
    baud_char: str
    ident: str
    text: str

    @property
    def baudrate(self) -> int:
        """The highest rate the meter offers (mode C), 300 for an unknown character."""
        return BAUD_RATES.get(self.baud_char, 300)


@dataclass(frozen=True, slots=True)
class SignOn:
    """``/?address!`` from a client (empty address: any meter)."""

    address: str


@dataclass(frozen=True, slots=True)
class OptionSelect:
    """``ACK V Z Y``: protocol (``0`` normal), baud char, mode (``0`` readout, ``1`` programming)."""

    protocol: str
    baud_char: str
    mode: str


@dataclass(frozen=True, slots=True)
class Break:
    """``SOH B0 ETX BCC``: the client ends the session."""


def build_sign_on(address: str = "") -> bytes:
    """``/?address!\\r\\n``; the address (device address, up to 32 printable characters) is optional."""
    if len(address) > 32 or any(c in "/?!\r\n" or not c.isprintable() for c in address):
        raise ConfigError(f"IEC 62056-21 device address {address!r}: up to 32 printable characters, no / ? !")
    return b"/?" + address.encode("ascii") + b"!\r\n"


def build_identification(manufacturer: str, baud_char: str, ident: str) -> bytes:
    """``/XXXZident\\r\\n``."""
    if len(manufacturer) != 3 or baud_char not in BAUD_RATES:
        raise ConfigError(f"identification: manufacturer must be 3 characters, baud char 0..6; got {manufacturer!r}")
    return f"/{manufacturer}{baud_char}{ident}\r\n".encode("ascii")


def build_option_select(baud_char: str, *, protocol: str = "0", mode: str = "0") -> bytes:
    """``ACK V Z Y CR LF``: e.g. ``build_option_select("5") == b"\\x06050\\r\\n"`` (readout at 9600 Bd)."""
    return bytes([ACK]) + f"{protocol}{baud_char}{mode}\r\n".encode("ascii")


def build_break() -> bytes:
    """``SOH B 0 ETX BCC``."""
    body = b"B0" + bytes([ETX])
    return bytes([SOH]) + body + bytes([bcc(body)])


def build_readout(lines: Iterable[str]) -> bytes:
    """``STX`` lines (each CR LF) ``! CR LF ETX BCC``."""
    body = "".join(line + "\r\n" for line in lines).encode("ascii") + b"!\r\n" + bytes([ETX])
    return bytes([STX]) + body + bytes([bcc(body)])


def parse_identification(line: bytes) -> Identification:
    """``/XXXZ[\\W]ident`` (with or without CR LF) -> :class:`Identification`; FrameError when malformed."""
    text = line.rstrip(b"\r\n").decode("ascii", errors="replace")
    m = re.fullmatch(r"/([A-Za-z]{2}[A-Za-z0-9])([0-9A-Za-z])(\\\d)?([ -~]{0,100})", text)
    if not m:
        raise FrameError(f"not an IEC 62056-21 identification line: {text[:60]!r}")
    return Identification(m[1], m[2], m[4].strip(), text[1:])
