"""The Green Button (NAESB REQ.21 ESPI 3.3) Atom feed of a meter's usage, valid against ESPI's usage.xsd + atom.xsd.

Feed layout (one Atom ``entry`` per ESPI resource, each with ``self`` / ``up`` links and ``related`` links to the
resources below it, as ESPI's resource URIs have them)::

    feed
      entry LocalTimeParameters   LocalTimeParameters/1              tzOffset, dstOffset, DST start/end rules
      entry UsagePoint            Subscription/S/UsagePoint/U        ServiceCategory kind: 0 electricity, 4 heat,
                                                                     2 water, 1 gas
      per channel (import 1-0:1.29.0 forward, export 1-0:2.29.0 reverse; heat 6-0:1.29.0, water 8-0:1.29.0,
      gas 7-0:3.29.0 forward):
        entry MeterReading        .../UsagePoint/U/MeterReading/R
        entry ReadingType         ReadingType/T                      deltaData Wh (energy) or m3 (volume), 10^m,
                                                                     commodity, intervalLength, currency
        entry IntervalBlock       .../MeterReading/R/IntervalBlock/D one per local day:
                                                                     IntervalReading timePeriod (start, duration in
                                                                     epoch s), value (integer Wh or m3 * 10^-m),
                                                                     ReadingQuality for flagged intervals

Values are the stored Wh or m3 scaled by the ReadingType's powerOfTenMultiplier m, chosen per channel as the largest of
0, -1, -2, -3 (m3: and -6) that represents every value exactly (else -3 or -6, rounded), so the feed's sums equal the
store's. Quality flags map to ESPI QualityOfReading codes by :func:`espi_qualities` (docs/usage.md has the table).
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import quote

import numpy as np

from amiflow.types import QualityFlag
from billing_bridge.customer.time_parameters import time_parameters
from billing_bridge.customer.usage import METHODS, Channel, MeterUsage
from rating.local_time import local_start_s

__all__ = ["ATOM_NS", "CURRENCY_CODES", "ESPI_NS", "espi_feed", "espi_qualities", "power_of_ten"]

ATOM_NS = "http://www.w3.org/2005/Atom"
ESPI_NS = "http://naesb.org/espi"
#: ISO 4217 numeric codes of the currencies ESPI's ``Currency`` enumerates
CURRENCY_CODES = {
    "USD": 840, "EUR": 978, "AUD": 36, "CAD": 124, "CHF": 756, "CNY": 156, "DKK": 208, "GBP": 826, "JPY": 392,
    "NOK": 578, "RUB": 643, "SEK": 752, "INR": 356,
}  # fmt: skip
#: flags that mean a check failed (QualityOfReading 10 "questionable")
_FAILED = (
    QualityFlag.SUSPECT | QualityFlag.SPIKE | QualityFlag.NEGATIVE | QualityFlag.CLOCK_SKEW
    | QualityFlag.NON_MONOTONIC | QualityFlag.IMPLAUSIBLE
)  # fmt: skip
_UUID_NS = uuid.UUID("4f0b5a52-3c1e-5d0e-9a57-616d69666c6f")
_A = f"{{{ATOM_NS}}}"
_E = f"{{{ESPI_NS}}}"
ET.register_namespace("", ATOM_NS)
ET.register_namespace("espi", ESPI_NS)


def espi_qualities(bits: int, method: int) -> tuple[int, ...]:
    """ESPI QualityOfReading codes of an interval's QualityFlag bits and VEE method (empty = the default quality).

    estimated -> 9 (linear interpolation) or 8 (from history); edited, not estimated -> 7; a failed check -> 10;
    unverified meter -> 14 (raw). Outage, backfilled, rollover and duplicate-source marks describe how a measured
    value arrived and map to no code.
    """
    codes = []
    if bits & QualityFlag.ESTIMATED:
        codes.append(9 if METHODS[method] == "interpolated" else 8)
    elif bits & QualityFlag.EDITED:
        codes.append(7)
    if bits & _FAILED:
        codes.append(10)
    if bits & QualityFlag.UNVERIFIED_METER:
        codes.append(14)
    return tuple(codes)


def power_of_ten(wh: np.ndarray, deepest: int = -3) -> int:
    """The largest multiplier m in 0, -1, -2, -3 (and -6 when ``deepest`` allows: ESPI's UnitMultiplierKind has no
    -4 or -5) for which every value is an integer number of units * 10^m; else ``deepest`` (values rounded)."""
    for m in (0, -1, -2, -3, -6):
        if m < deepest:
            break
        scaled = wh * 10.0**-m
        if np.all(np.abs(scaled - np.round(scaled)) < 1e-6):
            return m
    return deepest


def _sub(parent: ET.Element, tag: str, text: object = None) -> ET.Element:
    node = ET.SubElement(parent, tag)
    if text is not None:
        node.text = str(text)
    return node


def _stamp(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Feed:
    """Builds the entries; ``base`` prefixes every resource URI (ESPI's ``/espi/1_1/resource``)."""

    def __init__(self, usage: MeterUsage, base: str, updated: datetime) -> None:
        self.usage = usage
        self.base = base.rstrip("/")
        self.updated = _stamp(updated)
        self.meter = usage.meter.meter
        self.sub = f"{self.base}/Subscription/{quote(usage.meter.account or self.meter, safe='')}"
        self.point = f"{self.sub}/UsagePoint/{quote(self.meter, safe='')}"
        self.root = ET.Element(f"{_A}feed")
        _sub(self.root, f"{_A}id", self._urn("feed", str(usage.start), str(usage.end)))
        _sub(self.root, f"{_A}title", f"Green Button usage of meter {self.meter}, {usage.start} to {usage.end}")
        _sub(self.root, f"{_A}updated", self.updated)
        ET.SubElement(self.root, f"{_A}link", rel="self", href=f"{self.sub}/UsagePoint")

    def _urn(self, *parts: str) -> str:
        return f"urn:uuid:{uuid.uuid5(_UUID_NS, '/'.join((self.meter, *parts)))}"

    def entry(self, key: str, title: str, self_href: str, up: str, related: tuple[str, ...] = ()) -> ET.Element:
        """A new entry with its links; returns the ESPI ``content`` element to fill."""
        entry = ET.SubElement(self.root, f"{_A}entry")
        _sub(entry, f"{_A}id", self._urn(key))
        ET.SubElement(entry, f"{_A}link", rel="self", href=self_href)
        ET.SubElement(entry, f"{_A}link", rel="up", href=up)
        for href in related:
            ET.SubElement(entry, f"{_A}link", rel="related", href=href)
        _sub(entry, f"{_A}title", title)
        content = _sub(entry, f"{_A}content")
        _sub(entry, f"{_A}published", self.updated)
        _sub(entry, f"{_A}updated", self.updated)
        return content

    def time_parameters(self) -> str:
        href = f"{self.base}/LocalTimeParameters/1"
        tp = time_parameters(self.usage.meter.timezone, self.usage.start.year)
        node = _sub(
            self.entry("LocalTimeParameters", f"{self.usage.meter.timezone} local time", href,
                       f"{self.base}/LocalTimeParameters"),
            f"{_E}LocalTimeParameters",
        )  # fmt: skip
        _sub(node, f"{_E}dstEndRule", f"{tp.dst_end_rule:08X}")
        _sub(node, f"{_E}dstOffset", tp.dst_offset_s)
        _sub(node, f"{_E}dstStartRule", f"{tp.dst_start_rule:08X}")
        _sub(node, f"{_E}tzOffset", tp.tz_offset_s)
        return href

    def usage_point(self, time_href: str) -> None:
        readings = f"{self.point}/MeterReading"
        content = self.entry("UsagePoint", f"meter {self.meter}", self.point, f"{self.sub}/UsagePoint",
                             (readings, time_href))  # fmt: skip
        node = _sub(content, f"{_E}UsagePoint")
        _sub(_sub(node, f"{_E}ServiceCategory"), f"{_E}kind", self.usage.service.kind)
        _sub(node, f"{_E}status", 1)

    def channel(self, ch: Channel, currency: int | None) -> None:
        reading = f"{self.point}/MeterReading/{ch.flow}"
        rtype = f"{self.base}/ReadingType/{quote(self.meter, safe='')}-{ch.flow}"
        blocks = f"{reading}/IntervalBlock"
        service = self.usage.service
        what = {"electricity": "energy", "heat": "heat"}.get(service.name, service.name)
        what += " delivered to the customer" if ch.flow == "import" else " received from the customer"
        _sub(
            self.entry(f"MeterReading/{ch.flow}", f"{ch.obis} {what}", reading, f"{self.point}/MeterReading",
                       (blocks, rtype)),
            f"{_E}MeterReading",
        )  # fmt: skip
        m = power_of_ten(ch.wh, -3 if service.unit == "Wh" else -6)  # mWh; mL of water or gas
        node = _sub(self.entry(f"ReadingType/{ch.flow}", f"{service.unit} per {ch.interval_s} s, {ch.flow}", rtype,
                               f"{self.base}/ReadingType"), f"{_E}ReadingType")  # fmt: skip
        fields: list[tuple[str, object]] = [("accumulationBehaviour", 4), ("commodity", service.commodity)]
        if currency is not None:
            fields.append(("currency", currency))
        fields += [
            ("dataQualifier", 12),
            ("defaultQuality", 17 if ch.validated else 14),
            ("flowDirection", 1 if ch.flow == "import" else 19),
            ("intervalLength", ch.interval_s),
            ("kind", service.measurement),
            ("powerOfTenMultiplier", m),
            ("timeAttribute", 0),
            ("uom", service.uom),
        ]
        for tag, value in fields:
            _sub(node, f"{_E}{tag}", value)
        values = np.round(ch.wh * 10.0**-m).astype(np.int64)
        for day, sel in self._days(ch):
            content = self.entry(f"IntervalBlock/{ch.flow}/{day}", f"{ch.flow} {day}", f"{blocks}/{day}", blocks)
            self._block(_sub(content, f"{_E}IntervalBlock"), ch, values, sel)

    def _days(self, ch: Channel) -> Iterator[tuple[str, np.ndarray]]:
        """(local day YYYY-MM-DD, indices of the channel's intervals starting that day) in order."""
        day = local_start_s(ch.ts, ch.interval_s, self.usage.meter.timezone) // 86400
        cuts = np.flatnonzero(np.diff(day)) + 1
        for part in np.split(np.arange(len(day)), cuts):
            if part.size:
                yield str(np.datetime64(int(day[part[0]]), "D")), part

    @staticmethod
    def _block(node: ET.Element, ch: Channel, values: np.ndarray, sel: np.ndarray) -> None:
        step = ch.interval_s
        start = int(ch.ts[sel[0]]) - step
        interval = _sub(node, f"{_E}interval")
        _sub(interval, f"{_E}duration", int(ch.ts[sel[-1]]) - start)
        _sub(interval, f"{_E}start", start)
        for i in sel:
            reading = _sub(node, f"{_E}IntervalReading")
            for code in espi_qualities(int(ch.quality[i]), int(ch.method[i])):
                _sub(_sub(reading, f"{_E}ReadingQuality"), f"{_E}quality", code)
            period = _sub(reading, f"{_E}timePeriod")
            _sub(period, f"{_E}duration", step)
            _sub(period, f"{_E}start", int(ch.ts[i]) - step)
            _sub(reading, f"{_E}value", int(values[i]))


def espi_feed(
    usage: MeterUsage,
    *,
    currency: str | None = None,
    base: str = "/espi/1_1/resource",
    updated: datetime | None = None,
) -> bytes:
    """The ESPI Atom feed (UTF-8 XML) of ``usage``; ``currency`` (ISO 4217 letters) goes into the ReadingTypes."""
    feed = _Feed(usage, base, updated or datetime.now(UTC))
    feed.usage_point(feed.time_parameters())
    code = CURRENCY_CODES.get(currency.upper()) if currency else None
    for ch in usage.channels:
        feed.channel(ch, code)
    ET.indent(feed.root, space=" ")
    data: bytes = ET.tostring(feed.root, encoding="utf-8", xml_declaration=True)
    return data
