"""DSMR P1 telegrams (Dutch Smart Meter Requirements 2.2 to 5.0.2, P1 companion standard), sans-I/O.

A telegram is IEC 62056-21 style text pushed by the meter (DSMR 5: every second, 115200 8N1)::

    /XXXZ Ident CR LF
    CR LF
    OBIS(value*unit)(...) CR LF         one data object per line, several values in parentheses
    ...
    !CRC CR LF                          CRC: 4 hex digits, CRC-16/ARC (poly 0xA001 reflected, init 0) over '/'..'!'

DSMR 2.2/3.0 telegrams end with ``!`` CR LF and carry no CRC (accepted); DSMR 4/5 (version line ``1-3:0.2.8``
``(42)``/``(50)``) must carry one. Timestamps ``YYMMDDhhmmssX`` are Dutch local time, X = ``S`` (summer, UTC+2)
or ``W`` (winter, UTC+1); without X the Europe/Amsterdam rules decide. The gas (or water/heat) meter on M-Bus
channel n reports ``0-n:24.2.1(timestamp)(value*m3)`` with its own capture time. DSMR 2.2 writes gas as
``0-1:24.3.0(ts)(..)(..)(..)(0-1:24.2.1)(m3)`` followed by a line ``(value)``.

Readings come out in base units (kWh -> Wh, kW -> W); gas stays in m3. When a telegram carries both tariff
registers (``1.8.1``/``1.8.2``, ``2.8.1``/``2.8.2``) and no total, the total ``1-0:1.8.0``/``1-0:2.8.0`` is added
as their sum (billing reads the total). Problems are returned as :class:`~amiflow.types.Issue` records with stable
codes (``bad_crc``, ``crc_missing``, ``no_telegram``, ``bad_line``, ``bad_timestamp``, ``no_timestamp``,
``no_meter_id``), never raised.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np

from amiflow.types import Issue, ReadingBatch, Source, normalize_unit

__all__ = ["P1Reading", "crc16_arc", "format_timestamp", "parse_telegram", "parse_timestamp"]

_AMS = ZoneInfo("Europe/Amsterdam")
_SUMMER = timezone(timedelta(hours=2))
_WINTER = timezone(timedelta(hours=1))


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE: Final = _crc_table()


def crc16_arc(data: bytes, crc: int = 0) -> int:
    """CRC-16/ARC (IBM): reflected polynomial 0xA001, init 0, no final XOR. ``crc16_arc(b"123456789") == 0xBB3D``."""
    for b in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ b) & 0xFF]
    return crc


def parse_timestamp(text: str) -> int:
    """``YYMMDDhhmmss[S|W]`` (Dutch local time) -> epoch seconds UTC; ValueError when malformed."""
    m = re.fullmatch(r"(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})([SW]?)", text.strip())
    if not m:
        raise ValueError(f"not a DSMR timestamp: {text!r}")
    yy, mo, dd, hh, mi, ss = (int(g) for g in m.groups()[:6])
    naive = datetime(2000 + yy, mo, dd, hh, mi, ss)
    flag = m[7]
    if flag == "S":
        return int(naive.replace(tzinfo=_SUMMER).timestamp())
    if flag == "W":
        return int(naive.replace(tzinfo=_WINTER).timestamp())
    return int(naive.replace(tzinfo=_AMS).timestamp())


def format_timestamp(ts: int) -> str:
    """Epoch seconds -> ``YYMMDDhhmmssX`` in Dutch local time (the inverse of :func:`parse_timestamp`)."""
    local = datetime.fromtimestamp(ts, UTC).astimezone(_AMS)
    flag = "S" if local.dst() else "W"
    return local.strftime("%y%m%d%H%M%S") + flag


@dataclass(frozen=True, slots=True)
class P1Reading:
    """One decoded value: OBIS as written, value in base unit, base unit, epoch seconds."""

    obis: str
    value: float
    unit: str
    ts: int


_LINE_RE = re.compile(r"^(\d{1,3}-\d{1,3}:\d{1,3}\.\d{1,3}\.\d{1,3})((?:\([^()]*\))+)$")
_VALUE_RE = re.compile(r"^(-?\d+(?:\.\d+)?)(?:\*([A-Za-z0-9]+))?$")
_TOTALS = (("1-0:1.8.0", "1-0:1.8.1", "1-0:1.8.2"), ("1-0:2.8.0", "1-0:2.8.1", "1-0:2.8.2"))
_NOT_READINGS = ("0-0:96.", "1-3:0.2.8", "0-0:17.0.0", "1-0:99.97.0", "0-1:24.1.0", "0-1:96.1.0")


def _value(text: str) -> tuple[float, str] | None:
    """``123.456*kWh`` -> (123456.0, "Wh"); None for text that is not a number with a known unit."""
    m = _VALUE_RE.match(text)
    if not m:
        return None
    unit = m[2] or ""
    if unit.lower() == "m3":
        return float(m[1]), "m3"
    try:
        base, factor = normalize_unit(unit)
    except ValueError:
        return None
    return float(Decimal(m[1]) * Decimal(factor)), base  # exact decimal scaling: 1.001 kWh is 1001 Wh, not 1000.99..


@dataclass(slots=True)
class _Telegram:
    header: str
    body: list[str]
    issues: list[Issue]


def _check_frame(data: bytes, meter: str | None) -> _Telegram:
    """Find ``/``..``!``, check the CRC and split the lines; issues instead of exceptions."""
    start = data.find(b"/")
    end = data.find(b"!", start + 1) if start >= 0 else -1
    if start < 0 or end < 0:
        return _Telegram("", [], [Issue("no_telegram", "no '/' ... '!' telegram in the input", meter, data)])
    text = data[start : end + 1].decode("ascii", errors="replace")
    lines = [ln.strip() for ln in text[:-1].splitlines()]
    header, body = lines[0], [ln for ln in lines[1:] if ln]
    tail = data[end + 1 : end + 7].split(b"\r", 1)[0].split(b"\n", 1)[0].strip()
    version = next((ln for ln in body if ln.startswith("1-3:0.2.8(")), "")
    if tail:
        if not re.fullmatch(rb"[0-9A-Fa-f]{4}", tail):
            return _Telegram(header, [], [Issue("bad_crc", f"CRC field {tail!r} is not 4 hex digits", meter, data)])
        want = int(tail, 16)
        got = crc16_arc(data[start : end + 1])
        if want != got:
            detail = f"CRC mismatch: telegram says {want:04X}, computed {got:04X}"
            return _Telegram(header, [], [Issue("bad_crc", detail, meter, data)])
    elif version[10:11] in ("4", "5"):
        return _Telegram(header, [], [Issue("crc_missing", f"DSMR {version[10:12]} telegram without CRC", meter, data)])
    return _Telegram(header, body, [])


def _decode_lines(body: Sequence[str], meter: str | None, raw: bytes) -> tuple[dict[str, list[str]], list[Issue]]:
    objects: dict[str, list[str]] = {}
    issues: list[Issue] = []
    last: str | None = None
    for line in body:
        if line.startswith("(") and last is not None and line.endswith(")"):
            objects[last].extend(re.findall(r"\(([^()]*)\)", line))  # DSMR 2.2 gas value on its own line
            continue
        m = _LINE_RE.match(line)
        if not m:
            issues.append(Issue("bad_line", f"not an OBIS data line: {line[:60]!r}", meter, raw))
            last = None
            continue
        last = m[1]
        objects[last] = re.findall(r"\(([^()]*)\)", m[2])
    return objects, issues


def _equipment_id(objects: dict[str, list[str]]) -> str | None:
    raw = (objects.get("0-0:96.1.1") or objects.get("0-0:96.1.0") or [""])[0]
    if not raw:
        return None
    try:
        text = bytes.fromhex(raw).decode("ascii")
        if text.isprintable() and text:
            return text.strip()
    except ValueError:
        pass
    return raw


def _readings(
    objects: dict[str, list[str]], ts: int, meter: str | None, raw: bytes
) -> tuple[list[P1Reading], list[Issue]]:
    out: list[P1Reading] = []
    issues: list[Issue] = []
    for obis, values in objects.items():
        if obis.startswith(_NOT_READINGS) or obis == "0-0:1.0.0":
            continue
        if obis.endswith(":24.3.0") and len(values) >= 7:  # DSMR 2.2 gas: (ts)(..)(..)(..)(obis)(unit)(value)
            try:
                out.append(P1Reading(values[4], float(values[6]), "m3", parse_timestamp(values[0])))
            except ValueError:
                issues.append(Issue("bad_line", f"{obis}: bad DSMR 2.2 gas value {values!r}", meter, raw))
            continue
        item_ts = ts
        if len(values) == 2 and ":24.2." in obis:  # M-Bus device: (capture time)(value*unit)
            try:
                item_ts = parse_timestamp(values[0])
            except ValueError:
                issues.append(Issue("bad_timestamp", f"{obis}: bad capture time {values[0]!r}", meter, raw))
                continue
            values = values[1:]
        if len(values) != 1:
            continue
        parsed = _value(values[0])
        if parsed is None:
            continue
        if parsed[1] == "" and "*" not in values[0]:
            continue  # counters and codes without a unit are not readings
        out.append(P1Reading(obis, parsed[0], parsed[1], item_ts))
    have = {r.obis for r in out}
    for total, t1, t2 in _TOTALS:
        if total not in have and t1 in have and t2 in have:
            v = float(sum(Decimal(repr(r.value)) for r in out if r.obis in (t1, t2)))
            out.append(P1Reading(total, v, "Wh", ts))
    return out, issues


def parse_telegram(
    data: bytes, *, meter: str | None = None, received_ts: int | None = None
) -> tuple[ReadingBatch, list[Issue]]:
    """Decode one telegram into readings (``Source.P1``) and issues.

    ``meter`` names the meter (the MQTT topic's); without it the equipment id ``0-0:96.1.1`` (hex-decoded) does.
    ``received_ts`` stands in for the clock of telegrams without ``0-0:1.0.0`` (DSMR 2.2/3); without either the
    telegram gives a ``no_timestamp`` issue and no readings. A bad CRC gives no readings at all.
    """
    frame = _check_frame(bytes(data), meter)
    if frame.issues:
        return ReadingBatch(), frame.issues
    objects, issues = _decode_lines(frame.body, meter, data)
    name = meter or _equipment_id(objects)
    if name is None:
        return ReadingBatch(), [*issues, Issue("no_meter_id", "no meter given and no 0-0:96.1.1 line", None, data)]
    clock = objects.get("0-0:1.0.0")
    ts: int | None = received_ts
    if clock:
        try:
            ts = parse_timestamp(clock[0])
        except ValueError:
            return ReadingBatch(), [*issues, Issue("bad_timestamp", f"bad 0-0:1.0.0 {clock[0]!r}", name, data)]
    if ts is None:
        return ReadingBatch(), [*issues, Issue("no_timestamp", "telegram without 0-0:1.0.0 clock", name, data)]
    readings, more = _readings(objects, ts, name, data)
    return _batch(name, readings), issues + more


def _batch(meter: str, readings: Sequence[P1Reading]) -> ReadingBatch:
    return ReadingBatch.from_columns(
        meter,
        np.array([r.obis for r in readings], dtype=object),
        [r.ts for r in readings],
        [r.value for r in readings],
        unit=np.array([r.unit for r in readings], dtype=object),
        source=Source.P1,
    )
