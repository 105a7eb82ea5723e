"""IEC 62056-21 readout data (OBIS codes per IEC 62056-6-1): the data lines of a readout block to readings.

A readout block is ``STX data-lines ! CR LF ETX BCC``; each data line holds data sets
``ADDRESS(value*unit)(value)...``. The address is an OBIS code in full (``1-0:1.8.0``), short (``1.8.0``, A=1 and
B=0) or letter form (``C.1.0`` / ``C.1`` = serial number, ``F.F`` = error register), with or without the billing
period group F: ``*255`` (or no F) is the current value, ``*NN`` / ``&NN`` (``&``: a manually reset period, older
meters) a historic value, which is not a current reading. Clock lines ``0.9.1(hh:mm:ss)`` and ``0.9.2(YY-MM-DD)``
give the meter's local time (zone from the URI's ``tz`` parameter, default UTC). No I/O; the system clock is read
only when neither ``ts`` nor the meter clock says when.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

import numpy as np

from amiflow.types import Issue, ReadingBatch, Source, normalize_unit, parse_obis

from .messages import ETX, STX, bcc

__all__ = ["DataSet", "ParsedReadout", "parse_data_line", "parse_readout"]


@dataclass(frozen=True, slots=True)
class DataSet:
    """One ``ADDRESS(value*unit)...`` data set: the address as written, and (value, unit) per parenthesis."""

    address: str
    values: tuple[tuple[str, str], ...]


_SET_RE = re.compile(r"([0-9A-Za-z][0-9A-Za-z:\-.*&]*)?((?:\([^()]*\))+)")
_NUMBER_RE = re.compile(r"[-+]?\d+(?:\.\d*)?")


def parse_data_line(line: str) -> list[DataSet]:
    """The data sets of one line; a line of only ``(...)`` continues the previous address (address ``""``).

    ValueError when the line has text outside data sets.
    """
    sets: list[DataSet] = []
    pos = 0
    for m in _SET_RE.finditer(line):
        if line[pos : m.start()].strip():
            break
        values = tuple(_split_value(v) for v in re.findall(r"\(([^()]*)\)", m[2]))
        sets.append(DataSet(m[1] or "", values))
        pos = m.end()
    if line[pos:].strip() or not sets:
        raise ValueError(f"not a data line: {line[:60]!r}")
    return sets


def _split_value(text: str) -> tuple[str, str]:
    value, _, unit = text.partition("*")
    return value.strip(), unit.strip()


@dataclass(frozen=True, slots=True)
class ParsedReadout:
    """What a readout block holds: readings (base units), serial, the meter clock, data sets, issues."""

    readings: ReadingBatch
    serial: str | None
    clock: datetime | None
    datasets: tuple[DataSet, ...]
    issues: tuple[Issue, ...]


def _clock(date_text: str | None, time_text: str | None, tz: ZoneInfo | None) -> datetime | None:
    if not date_text or not time_text:
        return None
    d = re.sub(r"\D", "", date_text)
    t = re.sub(r"\D", "", time_text)
    if len(d) == 7:  # some meters prefix the year with a century digit: 1YYMMDD
        d = d[1:]
    if len(d) != 6 or len(t) not in (4, 6):
        return None
    try:
        naive = datetime(2000 + int(d[:2]), int(d[2:4]), int(d[4:6]), int(t[:2]), int(t[2:4]), int(t[4:6] or 0))
    except ValueError:
        return None
    if tz is None:
        return naive.replace(tzinfo=UTC)
    return naive.replace(tzinfo=tz).astimezone(UTC)


def _base_value(value: str, unit: str) -> tuple[float, str] | None:
    if not unit or not _NUMBER_RE.fullmatch(value):
        return None
    try:
        base, factor = normalize_unit(unit)
        return float(Decimal(value) * Decimal(repr(factor))), base
    except (ValueError, InvalidOperation):
        return None


def parse_readout(
    block: bytes, *, meter: str | None = None, ts: int | None = None, tz: ZoneInfo | None = None
) -> ParsedReadout:
    """Parse the data of a readout (with or without STX .. ETX BCC framing; the BCC is checked when present).

    Readings are the current values with a unit (historic ``*NN`` values and unitless codes are skipped), in base
    units, ``Source.IEC62056_21``, timestamped ``ts`` or else the meter clock or else now. The meter is named
    ``meter``, else the serial (``0-0:96.1.0`` / ``C.1.0``). Problems become issues (``bad_bcc``, ``bad_line``,
    ``no_end``, ``no_meter_id``), never exceptions.
    """
    raw = bytes(block)
    data = raw
    issues: list[Issue] = []
    if data[:1] == bytes([STX]):
        etx = data.find(bytes([ETX]), 1)
        if etx < 0 or etx + 1 >= len(data):
            issues.append(Issue("no_end", "readout without ETX and BCC (truncated)", meter, raw))
            data = data[1:]
        elif bcc(data[1 : etx + 1]) != data[etx + 1]:
            got, want = bcc(data[1 : etx + 1]), data[etx + 1]
            detail = f"BCC mismatch: block says {want:02X}, computed {got:02X}"
            return ParsedReadout(ReadingBatch(), None, None, (), (Issue("bad_bcc", detail, meter, raw),))
        else:
            data = data[1:etx]
    text = data.decode("ascii", errors="replace")
    if "!" not in text and not issues:
        issues.append(Issue("no_end", "readout without the closing '!'", meter, raw))
    text = text.split("!", 1)[0]
    datasets: list[DataSet] = []
    last = ""
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            found = parse_data_line(line.strip())
        except ValueError as exc:
            issues.append(Issue("bad_line", str(exc), meter, raw))
            continue
        for ds in found:
            if ds.address:
                last = ds.address
            datasets.append(DataSet(ds.address or last, ds.values))
    by_addr = {ds.address: ds for ds in datasets}

    def first(*names: str) -> str | None:
        for name in names:
            ds = by_addr.get(name)
            if ds is not None and ds.values and ds.values[0][0]:
                return ds.values[0][0]
        return None

    serial = first("0-0:96.1.0", "C.1.0", "C.1", "96.1.0", "0-0:C.1.0", "1-0:96.1.0", "0-0:96.1.0*255")
    clock = _clock(first("0-0:0.9.2", "0.9.2"), first("0-0:0.9.1", "0.9.1"), tz)
    name = meter or serial
    if name is None:
        issues.append(Issue("no_meter_id", "no meter given and no 0-0:96.1.0 / C.1.0 serial in the readout", None, raw))
        return ParsedReadout(ReadingBatch(), serial, clock, tuple(datasets), tuple(issues))
    when = ts if ts is not None else int(clock.timestamp()) if clock is not None else int(time.time())
    obis: list[str] = []
    values: list[float] = []
    units: list[str] = []
    seen: set[str] = set()
    for ds in datasets:
        if not ds.values:
            continue
        try:
            code = parse_obis(ds.address)
        except ValueError:
            continue
        if code.f != 255:
            continue  # a historic value (billing period F)
        parsed = _base_value(*ds.values[0])
        if parsed is None or code.c in (0, 96, 97) or str(code) in seen:
            continue
        seen.add(str(code))
        obis.append(str(code))
        values.append(parsed[0])
        units.append(parsed[1])
    batch = ReadingBatch.from_columns(
        name,
        np.array(obis, dtype=object),
        [when] * len(obis),
        values,
        unit=np.array(units, dtype=object),
        source=Source.IEC62056_21,
    )
    return ParsedReadout(batch, serial, clock, tuple(datasets), tuple(issues))
