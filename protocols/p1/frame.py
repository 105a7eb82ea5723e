"""A P1 telegram's frame: find ``/`` .. ``!``, check the CRC by the rule of the telegram's DSMR version, split lines.

Layout (P1 companion standard 5.0.2 clause 6.2; DSMR 2.2/3.0 clause 6)::

    /XXXZ Ident CR LF                   identification: manufacturer XXX, baud character Z (IEC 62056-21)
    CR LF
    data lines                          :mod:`.lines`
    !CRC CR LF                          CRC: hex digits, CRC-16/ARC (poly 0xA001 reflected, init 0) over '/'..'!'

The header cannot tell versions apart (DSMR 2.2 ``/ISk5\\2MT382-1004`` and DSMR 5 ``/ISk5\\2MT382-1000`` both say
``5``, the baud character of 9600 Bd): the version line ``1-3:0.2.8(40|42|50)`` can. It came with DSMR 4.0, and
so did the CRC; Belgian e-MUCS telegrams (Fluvius) name their version in ``0-0:96.1.4(50217)`` instead and carry a
CRC too. So a telegram with a CRC is checked whatever it says; one without a CRC is accepted unless its version
line says it must have one (``crc_missing``). Some meters drop the CRC's leading zeros (``!B9F``): 1 to 4 digits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from amiflow.types import Issue

__all__ = ["Frame", "crc16_arc", "split_frame"]


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE: Final = _crc_table()
_CRC_RE = re.compile(rb"[0-9A-Fa-f]{1,4}")


def crc16_arc(data: bytes, crc: int = 0) -> int:
    """CRC-16/ARC (IBM): reflected polynomial 0xA001, init 0, no final XOR. ``crc16_arc(b"123456789") == 0xBB3D``."""
    for b in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ b) & 0xFF]
    return crc


@dataclass(frozen=True, slots=True)
class Frame:
    """A telegram that passed its CRC rule: the identification (without ``/``), the non-empty data lines,
    ``crc`` ``"ok"`` (checked) or ``"none"`` (a version without one), and the version as written (or None)."""

    header: str
    lines: tuple[str, ...]
    crc: str
    version: str | None


def _version(lines: list[str]) -> tuple[str | None, bool]:
    """(the version as written, whether that version must carry a CRC)."""
    for line in lines:
        if line.startswith("1-3:0.2.8(") and line.endswith(")"):
            text = line[10:-1]
            return text, text[:1].isdigit() and int(text[:1]) >= 4
        if line.startswith("0-0:96.1.4(") and line.endswith(")"):  # e-MUCS (Belgium): always with a CRC
            return line[11:-1], True
    return None, False


def split_frame(data: bytes, meter: str | None) -> tuple[Frame | None, Issue | None]:
    """The frame of the first telegram in ``data``, or None and the issue (``no_telegram``, ``bad_crc``,
    ``crc_missing``) that says why it cannot be trusted."""
    start = data.find(b"/")
    end = data.find(b"!", start + 1) if start >= 0 else -1
    if start < 0 or end < 0:
        return None, Issue("no_telegram", "no '/' ... '!' telegram in the input", meter, data)
    text = data[start : end + 1].decode("ascii", errors="replace")
    lines = [ln.strip().lstrip("\x02") for ln in text[:-1].splitlines()]  # STX: an IEC 62056-21 readout block
    header, body = lines[0][1:], [ln for ln in lines[1:] if ln]
    version, needs_crc = _version(body)
    tail = data[end + 1 : end + 8].split(b"\r", 1)[0].split(b"\n", 1)[0].strip()
    if tail:
        if not _CRC_RE.fullmatch(tail):
            return None, Issue("bad_crc", f"CRC field {tail[:8]!r} is not 1 to 4 hex digits", meter, data)
        want, got = int(tail, 16), crc16_arc(data[start : end + 1])
        if want != got:
            return None, Issue("bad_crc", f"CRC mismatch: telegram says {want:04X}, computed {got:04X}", meter, data)
        return Frame(header, tuple(body), "ok", version), None
    if needs_crc:
        return None, Issue("crc_missing", f"telegram of version {version} without its CRC", meter, data)
    return Frame(header, tuple(body), "none", version), None
