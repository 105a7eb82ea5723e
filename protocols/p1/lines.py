"""P1 data lines (IEC 62056-21 data sets, OBIS per IEC 62056-6-1) to addressed values.

A data line is ``ADDRESS(value)(value)...``; a value is ``number*unit``, a number, a timestamp, hex text or empty.
The address is an OBIS code ``A-B:C.D.E``, with or without the billing-period group F: ``1-0:1.8.0*255``,
``1-0:31.7.0.255`` (the DSMR 4.2 example telegram) or ``1-0:1.8.0&01`` (IEC 62056-21 older meters: ``&`` marks a
manually reset billing period). F = 255 (or no F) is the current value; any other F is a historic value of billing
period F. Short forms ``1.8.0`` (A=1, B=0) and letter codes ``C.1.0`` / ``F.F`` of optical-port readouts are kept.
A line of only ``(value)`` continues the line before (DSMR 2.2/3.0 gas: ``0-1:24.3.0(...)`` then ``(00947.680)``).

The P1 companion standard's own DSMR 4.2 example writes ``1-0:72:32.0``; a ``:`` in place of the ``.`` between C
and D is repaired (with an informational issue), since a meter that copied the example means ``1-0:72.32.0``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from amiflow.types import parse_obis

__all__ = ["DataLine", "parse_lines"]

_LINE_RE = re.compile(r"([0-9A-Za-z][0-9A-Za-z:\-.*&]{0,40})((?:\([^()]*\))+)")
_VALUES_RE = re.compile(r"\(([^()]*)\)")
_TYPO_RE = re.compile(r"(\d{1,3}-\d{1,3}):(\d{1,3}):(\d{1,3}\.\d{1,3}(?:[.*&]\d{1,3})?)")


@dataclass(frozen=True, slots=True)
class DataLine:
    """One data object: ``obis`` normalised to ``A-B:C.D.E`` for current values (the address as written for
    historic values and letter codes), its values as written, and flags for what the address looked like."""

    obis: str
    address: str
    values: tuple[str, ...]
    historic: bool = False
    repaired: bool = False


_PLAIN_RE = re.compile(r"\d{1,3}-\d{1,3}:\d{1,3}\.\d{1,3}\.\d{1,3}")


@functools.lru_cache(maxsize=4096)  # a meter sends the same few dozen addresses every second
def _address(text: str) -> tuple[str, bool, bool] | None:
    """(obis, historic, repaired) of an address, or None when it is not one."""
    if _PLAIN_RE.fullmatch(text) and max(int(g) for g in re.split(r"[-:.]", text)) <= 255:
        return text, False, False
    repaired = False
    typo = _TYPO_RE.fullmatch(text)
    if typo:
        text, repaired = f"{typo[1]}:{typo[2]}.{typo[3]}", True
    try:
        code = parse_obis(text)
    except ValueError:
        if re.fullmatch(r"[CF](?:\.[0-9A-Z]{1,3}){1,3}", text):  # letter codes: C.1 serial, F.F error register
            return text, False, False
        return None
    if code.f != 255:
        return text, True, repaired
    return str(code), False, repaired


def parse_lines(lines: Iterable[str]) -> tuple[list[DataLine], list[str]]:
    """The data objects of a telegram's lines, and the lines that are not data lines (as written)."""
    out: list[DataLine] = []
    bad: list[str] = []
    for line in lines:
        if line.startswith("(") and line.endswith(")") and out and _VALUES_RE.sub("", line) == "":
            prev = out[-1]
            more = tuple(_VALUES_RE.findall(line))
            out[-1] = DataLine(prev.obis, prev.address, prev.values + more, prev.historic, prev.repaired)
            continue
        m = _LINE_RE.fullmatch(line)
        parsed = _address(m[1]) if m else None
        if m is None or parsed is None:
            bad.append(line)
            continue
        obis, historic, repaired = parsed
        out.append(DataLine(obis, m[1], tuple(_VALUES_RE.findall(m[2])), historic, repaired))
    return out, bad
