"""CRC-16 of SML (SML 1.04 / BSI TR-03109-1 Anlage IV: the transport trailer and each message's ``crc16``).

SML uses CRC-16/X-25 (the HDLC FCS of ISO/IEC 13239): reflected polynomial 0x1021 (0x8408), init 0xFFFF, final
XOR 0xFFFF; ``crc16_x25(b"123456789") == 0x906E``. On the wire both the transport trailer and a message's
``crc16`` field carry it low byte first (as every capture in tests/data/sml/ does: EMH, ISKRA, DZG, eBZ, Itron,
Landis+Gyr), so the ``Unsigned16`` a TLV decoder reads for ``crc16`` is the byte-swapped CRC.

Firmware quirks accepted as named variants (``quirks=True``): ``x25-msb`` (the X-25 value high byte first, as
some old encoders write it) and ``kermit`` (CRC-16/KERMIT: init 0, no final XOR, in either byte order; the Holley
DTZ541 on its RS-485 port, see smllib's ``crc='kermit'`` and libsml's message CRC workaround).
"""

from __future__ import annotations

from typing import Final

__all__ = ["CRC_VARIANTS", "crc16_kermit", "crc16_x25", "crc_variant"]


def _table() -> tuple[int, ...]:
    out = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
        out.append(crc)
    return tuple(out)


_TABLE: Final = _table()
CRC_VARIANTS: Final = ("x25", "x25-msb", "kermit")


def _reflected(data: bytes | bytearray | memoryview, crc: int) -> int:
    table = _TABLE
    for b in data:
        crc = (crc >> 8) ^ table[(crc ^ b) & 0xFF]
    return crc


def crc16_x25(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/X-25 over ``data``: the value whose low byte SML sends first."""
    return _reflected(data, 0xFFFF) ^ 0xFFFF


def crc16_kermit(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/KERMIT (same polynomial, init 0, no final XOR)."""
    return _reflected(data, 0)


def crc_variant(data: bytes | bytearray | memoryview, wire: bytes, *, quirks: bool = True) -> str | None:
    """Which CRC ``wire`` (the 2 bytes as sent) is over ``data``: ``"x25"``, a quirk variant, or None (bad)."""
    x25 = crc16_x25(data)
    if wire == x25.to_bytes(2, "little"):
        return "x25"
    if not quirks:
        return None
    if wire == x25.to_bytes(2, "big"):
        return "x25-msb"
    kermit = crc16_kermit(data)
    if wire in (kermit.to_bytes(2, "little"), kermit.to_bytes(2, "big")):
        return "kermit"
    return None
