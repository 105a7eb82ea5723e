"""DSMR P1 telegrams (DSMR 2.2 to 5.0.2, e-MUCS) to readings and issues, sans-I/O.

A telegram is IEC 62056-21 style text pushed by the meter (DSMR 5: every second, 115200 8N1; DSMR 2.2/3.0: every
10 s, 9600 7E1): :mod:`.frame` checks its CRC by the rule of its version, :mod:`.lines` reads the data lines and
:mod:`.objects` says what each one is. This module puts them together::

    /XXXZ Ident  ->  meter id of last resort          0-0:96.1.1 (hex)  ->  the meter id
    0-0:1.0.0    ->  the clock of every reading        0-n:24.2.1        ->  M-Bus readings, own capture time
    1-0:1.8.1 .. ->  readings in base units            counters, texts, logs, peaks -> :class:`P1Telegram`

Readings come out in base units (kWh -> Wh, kW -> W; gas and water stay in m3). When a telegram carries the tariff
registers (``1.8.1``/``1.8.2``..., ``2.8.x``) and no total, the total ``1-0:1.8.0``/``1-0:2.8.0`` is added as
their sum (billing reads the total). Problems are :class:`~amiflow.types.Issue` records with stable codes, never
exceptions. Errors: ``no_telegram``, ``bad_crc``, ``crc_missing``, ``bad_line``, ``bad_timestamp``,
``no_timestamp``, ``no_meter_id``, ``bad_value``. Informational ones (``extra["severity"] == "info"``, see
:func:`is_informational`) say how an unusual telegram was read: ``receive_time`` (no clock line, DSMR 2.2/3.0:
stamped with the caller's receive time), ``meter_id_from_header`` (no equipment identifier), ``obis_repaired``,
``unknown_unit``, ``bad_power_failure_log``, ``bad_demand_history``.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np

from amiflow.types import Issue, ReadingBatch, Source

from .clock import parse_timestamp
from .frame import Frame, split_frame
from .lines import DataLine, parse_lines
from .objects import DEVICE_TYPES, DemandPeak, Kind, PowerFailure, base_value, classify, demand_history, hex_text
from .objects import power_failures as read_power_failures

__all__ = ["MbusDevice", "P1Reading", "P1Telegram", "decode_telegram", "is_informational", "parse_telegram"]

_INFO = {"severity": "info"}
_IDS = ("0-0:96.1.1", "0-0:96.1.0", "0-0:96.1.255", "0-0:42.0.0", "1-0:0.0.0", "0-0:0.0.0", "1-0:96.1.0")
_HEADER_RE = re.compile(r"[A-Za-z]{3}\d.{1,60}")
_TOTALS = (("1-0:1.8.0", "1-0:1.8."), ("1-0:2.8.0", "1-0:2.8."))


def is_informational(issue: Issue) -> bool:
    """True for an issue that only says how an unusual telegram was read (its readings are good)."""
    return issue.extra.get("severity") == "info"


@dataclass(frozen=True, slots=True)
class P1Reading:
    """One decoded value: OBIS as written, value in base unit, base unit, epoch seconds."""

    obis: str
    value: float
    unit: str
    ts: int


@dataclass(frozen=True, slots=True)
class MbusDevice:
    """An M-Bus channel (1..4): device type (EN 13757-3), its kind, equipment id, valve or breaker position, and its
    last value with its capture time."""

    channel: int
    device_type: int | None = None
    kind: str = ""
    equipment_id: str | None = None
    valve: str | None = None
    breaker: str | None = None
    reading: P1Reading | None = None


@dataclass(frozen=True, slots=True)
class P1Telegram:
    """Everything one telegram says. ``clock`` is ``"meter"`` (0-0:1.0.0), ``"receive_time"`` (the caller's, for
    telegrams without a clock) or ``"none"``; ``meter_id_from`` names the line the meter id came from (``"given"``,
    ``"header"``, an OBIS code). ``objects`` holds every data line's values as written, by normalised OBIS code."""

    header: str = ""
    version: str | None = None
    crc: str = "none"
    meter: str | None = None
    meter_id_from: str = ""
    clock: str = "none"
    ts: int | None = None
    readings: tuple[P1Reading, ...] = ()
    objects: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    counters: Mapping[str, int] = field(default_factory=dict)
    states: Mapping[str, str] = field(default_factory=dict)
    texts: Mapping[str, str] = field(default_factory=dict)
    power_failures: tuple[PowerFailure, ...] = ()
    demand_peaks: tuple[DemandPeak, ...] = ()
    mbus: tuple[MbusDevice, ...] = ()
    issues: tuple[Issue, ...] = ()

    def batch(self) -> ReadingBatch:
        """The readings as a :class:`ReadingBatch` (``Source.P1``), empty without a meter id."""
        if self.meter is None or not self.readings:
            return ReadingBatch()
        rs = self.readings
        return ReadingBatch.from_columns(
            self.meter,
            np.array([r.obis for r in rs], dtype=object),
            [r.ts for r in rs],
            [r.value for r in rs],
            unit=np.array([r.unit for r in rs], dtype=object),
            source=Source.P1,
        )


class _Reader:
    """Walks the data lines of one telegram and collects what they say."""

    def __init__(self, meter: str | None, raw: bytes) -> None:
        self.meter, self.raw = meter, raw
        self.issues: list[Issue] = []
        self.readings: list[P1Reading] = []
        self.counters: dict[str, int] = {}
        self.states: dict[str, str] = {}
        self.texts: dict[str, str] = {}
        self.failures: list[PowerFailure] = []
        self.peaks: list[DemandPeak] = []
        self.mbus: dict[int, MbusDevice] = {}

    def issue(self, code: str, detail: str, *, info: bool = False) -> None:
        self.issues.append(Issue(code, detail, self.meter, self.raw, dict(_INFO) if info else {}))

    def reading(
        self, obis: str, text: str, ts: int, *, unitless: bool = False, strict: bool = True
    ) -> P1Reading | None:
        """The reading of one ``value*unit`` (None for a bare number unless ``unitless``); ``strict`` objects whose
        value is not a number give a ``bad_value`` issue."""
        parsed = base_value(text)
        if parsed is None:
            unit = text.partition("*")[2]
            if unit and base_value(text.partition("*")[0]) is not None:
                self.issue("unknown_unit", f"{obis}: unit {unit!r} is not known; value skipped", info=True)
            elif text and strict:
                self.issue("bad_value", f"{obis}: {text[:40]!r} is not a number")
            return None
        if parsed[1] == "" and not unitless:
            return None  # a bare number where a unit belongs: no scale, so no reading
        found = P1Reading(obis, parsed[0], parsed[1], ts)
        self.readings.append(found)
        return found

    def line(self, item: DataLine, ts: int | None) -> None:
        kind, name = classify(item.obis)
        values, first = item.values, (item.values[0] if item.values else "")
        if kind is Kind.COUNTER and first.isdigit():
            self.counters[item.obis] = int(first)
        elif kind in (Kind.STATE, Kind.VERSION, Kind.SETTING, Kind.IDENTIFIER, Kind.DEVICE_TYPE):
            self.states[item.obis] = first
            if _channel(item.obis):
                self._mbus_field(item.obis, kind, name, first)
        elif kind is Kind.TEXT:
            self.texts[item.obis] = hex_text(first)
        elif kind is Kind.POWER_FAILURES:
            found, problem = read_power_failures(values)
            self.failures += found
            if problem:
                self.issue("bad_power_failure_log", f"{item.obis}: {problem}", info=True)
        elif kind is Kind.DEMAND_HISTORY:
            peaks, problem = demand_history(values)
            self.peaks += peaks
            if problem:
                self.issue("bad_demand_history", f"{item.obis}: {problem}", info=True)
        elif kind in (Kind.MBUS_READING, Kind.MAX_DEMAND, Kind.OLD_GAS):
            self._timed(item, kind)
        elif ts is not None and len(values) == 1 and kind in (Kind.READING, Kind.OTHER):
            self.reading(item.obis, first, ts, unitless=name.startswith("power_factor"), strict=kind is Kind.READING)

    def _timed(self, item: DataLine, kind: Kind) -> None:
        """``(capture time)(value*unit)``; DSMR 2.2 gas: ``(time)(..)(..)(..)(obis)(unit)`` + ``(value)``."""
        values = item.values
        if kind is Kind.OLD_GAS:
            if len(values) < 7:
                self.issue("bad_line", f"{item.obis}: DSMR 2.2 gas without its value line: {values!r}")
                return
            obis = values[4] if re.fullmatch(r"\d{1,3}-\d{1,3}:\d{1,3}\.\d{1,3}\.\d{1,3}", values[4]) else item.obis
            stamp, text = values[0], f"{values[6]}*{values[5]}"
        elif len(values) == 2:
            obis, stamp, text = item.obis, values[0], values[1]
        else:
            return
        try:
            ts = parse_timestamp(stamp)
        except ValueError:
            self.issue("bad_timestamp", f"{item.obis}: bad capture time {stamp!r}")
            return
        found = self.reading(obis, text, ts)
        channel = _channel(item.obis)
        if channel:
            dev = self.mbus.get(channel, MbusDevice(channel))
            raw = base_value(text)
            if found is None and raw is not None:  # no unit: kept on the device, not a reading
                found = P1Reading(obis, raw[0], raw[1], ts)
            self.mbus[channel] = dataclasses.replace(dev, reading=found)

    def _mbus_field(self, obis: str, kind: Kind, name: str, value: str) -> None:
        channel = _channel(obis)
        dev = self.mbus.get(channel, MbusDevice(channel))
        if kind is Kind.DEVICE_TYPE and value.isdigit():
            dev = dataclasses.replace(dev, device_type=int(value), kind=DEVICE_TYPES.get(int(value), "other"))
        elif kind is Kind.IDENTIFIER:
            dev = dataclasses.replace(dev, equipment_id=hex_text(value) or None)
        elif name == "valve":
            dev = dataclasses.replace(dev, valve=value)
        elif name == "breaker":
            dev = dataclasses.replace(dev, breaker=value)
        self.mbus[channel] = dev

    def add_totals(self, ts: int) -> None:
        have = {r.obis: r for r in self.readings}
        for total, prefix in _TOTALS:
            tariffs = [have[f"{prefix}{t}"] for t in range(1, 5) if f"{prefix}{t}" in have]
            if total not in have and len(tariffs) >= 2 and all(r.ts == ts for r in tariffs):
                value = float(sum(Decimal(repr(r.value)) for r in tariffs))
                self.readings.append(P1Reading(total, value, "Wh", ts))


@functools.lru_cache(maxsize=1024)
def _channel(obis: str) -> int:
    """The M-Bus channel (1..4) of an ``0-n:...`` code, 0 for the meter's own objects."""
    m = re.match(r"0-([1-4]):", obis)
    return int(m[1]) if m else 0


def _meter_id(frame: Frame, objects: Mapping[str, tuple[str, ...]], given: str | None) -> tuple[str | None, str]:
    if given:
        return given, "given"
    for obis in _IDS:
        values = objects.get(obis)
        if values and values[0] and hex_text(values[0]).strip():
            return hex_text(values[0]).strip(), obis
    if _HEADER_RE.fullmatch(frame.header):
        return frame.header.strip(), "header"
    return None, ""


def decode_telegram(data: bytes, *, meter: str | None = None, received_ts: int | None = None) -> P1Telegram:
    """Decode one telegram into a :class:`P1Telegram` (readings, objects, issues).

    ``meter`` names the meter (the MQTT topic's); without it the equipment id (``0-0:96.1.1``, hex-decoded, or
    another identifier line) does, and without one the identification line of the header does (an informational
    ``meter_id_from_header`` issue). ``received_ts`` stands in for the clock of telegrams without ``0-0:1.0.0``
    (DSMR 2.2/3.0; an informational ``receive_time`` issue); without either the telegram gives a ``no_timestamp``
    issue and no readings. A bad CRC gives no readings at all.
    """
    raw = bytes(data)
    frame, problem = split_frame(raw, meter)
    if frame is None:
        return P1Telegram(meter=meter, issues=(problem,) if problem else ())
    lines, bad = parse_lines(frame.lines)
    objects: dict[str, tuple[str, ...]] = {}
    for item in lines:
        objects.setdefault(item.obis, item.values)
    name, source = _meter_id(frame, objects, meter)
    reader = _Reader(name, raw)
    reader.issues += [Issue("bad_line", f"not an OBIS data line: {ln[:60]!r}", name, raw) for ln in bad]
    for item in lines:
        if item.repaired:
            reader.issue("obis_repaired", f"{item.address!r} read as {item.obis}", info=True)
    if name is None:
        reader.issue("no_meter_id", "no meter given, no equipment identifier and no identification header")
    elif source == "header":
        detail = f"no equipment identifier line: meter id {name!r} from the identification header"
        reader.issue("meter_id_from_header", detail, info=True)
    ts, clock = _clock(objects.get("0-0:1.0.0"), received_ts, reader)
    for item in lines:
        if not item.historic:
            reader.line(item, ts)
    if ts is not None:
        reader.add_totals(ts)
    return P1Telegram(
        header=frame.header,
        version=frame.version,
        crc=frame.crc,
        meter=name,
        meter_id_from=source,
        clock=clock,
        ts=ts,
        readings=tuple(reader.readings) if name is not None and ts is not None else (),
        objects=objects,
        counters=reader.counters,
        states=reader.states,
        texts=reader.texts,
        power_failures=tuple(reader.failures),
        demand_peaks=tuple(reader.peaks),
        mbus=tuple(reader.mbus[c] for c in sorted(reader.mbus)),
        issues=tuple(reader.issues),
    )


def _clock(values: Sequence[str] | None, received_ts: int | None, reader: _Reader) -> tuple[int | None, str]:
    if values:
        try:
            return parse_timestamp(values[0]), "meter"
        except ValueError:
            reader.issue("bad_timestamp", f"bad 0-0:1.0.0 {values[0]!r}")
            return None, "none"
    if received_ts is not None:
        reader.issue("receive_time", "no 0-0:1.0.0 clock line: readings stamped with the receive time", info=True)
        return int(received_ts), "receive_time"
    reader.issue("no_timestamp", "telegram without 0-0:1.0.0 clock and no receive time given")
    return None, "none"


def parse_telegram(
    data: bytes, *, meter: str | None = None, received_ts: int | None = None
) -> tuple[ReadingBatch, list[Issue]]:
    """Decode one telegram into readings (``Source.P1``) and issues: :func:`decode_telegram`, as a batch."""
    telegram = decode_telegram(data, meter=meter, received_ts=received_ts)
    return telegram.batch(), list(telegram.issues)
