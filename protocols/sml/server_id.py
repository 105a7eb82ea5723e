"""SML server ids as printed on the meter: the identification number of DIN 43863-5 (and the older layouts).

The server id of a German/Austrian meter (SML_PublicOpen.Res ``serverId``, GetList.Res ``serverId``, often also
the value of 1-0:0.0.9 or 1-0:96.1.0) is, by its first byte (the layouts PTB's TRuDI reads too)::

    0a  M  F F F  B  N N N N      DIN 43863-5:2012: medium M (1 electricity, 7 gas ...), FLAG manufacturer
                                  id (3 ASCII letters), fabrication block B (binary), number N (Unsigned32)
                                  -> "1 EMH00 12345678": medium, FLAG, block as 2 decimal digits, number as 8
    09  M  F F F  B  N N N N      DIN 43863-5:2010-07: the same, the block printed as 2 hex digits (EasyMeter
                                  "1 ESY11 ...", EMH eHZ "1 EMH00 ...")
    06  F F F  N N N N N N        DIN 43863-5:2010-02: FLAG, then a 6-byte number whose 13 decimal digits are
                                  medium, year (2), block (2) and number (8) -> "1 EMH 10 02 12345678"
    anything else                 lowercase hex of all bytes (M-Bus ids, MAC-based ids, all-zero test ids)

The nameplate puts a space between the medium, the FLAG-and-block and the number, as the brief's example
``1 EMH00 12345678`` shows; :func:`format_server_id` writes that form (``compact=True`` drops the spaces, the form
of a barcode).
"""

from __future__ import annotations

from typing import Final

__all__ = ["format_server_id", "parse_server_id"]

_DIN_2012: Final = 0x0A
_DIN_2010_07: Final = 0x09
_DIN_2010_02: Final = 0x06


def _flag(raw: bytes) -> str | None:
    return raw.decode("ascii") if len(raw) == 3 and raw.isalpha() and raw.isupper() else None


def parse_server_id(raw: bytes) -> tuple[str, ...] | None:
    """The printed groups of a DIN 43863-5 id (``("1", "EMH00", "12345678")``), or None for another layout."""
    if len(raw) == 10 and raw[0] in (_DIN_2012, _DIN_2010_07) and raw[1] <= 0x0F:
        flag = _flag(raw[2:5])
        if flag is None:
            return None
        block = f"{raw[5]:02d}" if raw[0] == _DIN_2012 else f"{raw[5]:02X}"
        if raw[0] == _DIN_2012 and raw[5] > 99:
            return None
        return f"{raw[1]:X}", flag + block, f"{int.from_bytes(raw[6:], 'big'):08d}"
    if len(raw) == 10 and raw[0] == _DIN_2010_02:
        flag = _flag(raw[1:4])
        digits = f"{int.from_bytes(raw[4:], 'big'):013d}"
        if flag is None or len(digits) != 13:
            return None
        return digits[0], flag, digits[1:3], digits[3:5], digits[5:]
    return None


def format_server_id(raw: bytes, *, compact: bool = False) -> str:
    """A server id the way the meter's nameplate shows it (see the module docstring), else lowercase hex."""
    groups = parse_server_id(bytes(raw))
    if groups is None:
        return bytes(raw).hex()
    return ("" if compact else " ").join(groups)
