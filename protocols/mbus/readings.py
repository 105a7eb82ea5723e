"""M-Bus records -> :class:`~amiflow.types.ReadingBatch` rows, sans-I/O.

Only current values become readings: storage number 0, function instantaneous, a numeric value. Historic values
(storage > 0), maxima, minima and error-state values stay in the records (``amiflow decode mbus`` shows them all).
Channels are OBIS-style codes in amiflow's convention (``x.8.x`` cumulative register, ``x.7.x`` instantaneous,
``channel_kind`` of :mod:`amiflow.types`): A from the medium (1 electricity, 4 heat cost allocator, 5 cooling,
6 heat, 7 gas, 8 (cold) water, 9 warm/hot water, 0 other), B the subunit, E the tariff::

    energy              A-B:1.8.E Wh (J converted; electricity export, VIFE 3C: 1-B:2.8.E)
    reactive energy     A-B:3.8.E varh
    volume              heat/cooling A-B:2.8.E, gas 7-B:3.8.E, water and others A-B:1.8.E, m3
    power               A-B:1.7.0 W (J/h converted; electricity export 2.7.0)
    volume flow         heat/cooling A-B:2.7.0, gas 3.7.0, others 1.7.0, m3/h
    temperatures        flow A-B:10.7.0, return 11.7.0, difference 12.7.0 (K), external 13.7.0, degC
    voltage, current    1-B:32.7.0 V, 1-B:31.7.0 A
    H.C.A. units        4-B:1.8.E (dimensionless)

Pressure, mass, durations, dates and identifiers are not readings. ``ts`` is the time the telegram was received
(the meter's clock, local time without a zone, is reported as :attr:`MbusReadings.clock` for a clock check).
A record is kept raw in :attr:`MbusReadings.sources` (one per row): the record's bytes as hex.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from amiflow.types import ReadingBatch, Source

from .header import DeviceHeader
from .records import DataRecord

__all__ = ["MBUS_SOURCE", "MbusReadings", "mbus_readings", "medium_group"]

#: Source of M-Bus rows: ``Source.MBUS`` once amiflow.types has one, IMPORT until then.
MBUS_SOURCE: Final[Source] = Source.MBUS
_GROUPS: Final = {0x02: 1, 0x08: 4, 0x0A: 5, 0x0B: 5, 0x04: 6, 0x0C: 6, 0x0D: 6, 0x03: 7, 0x07: 8, 0x16: 8}
_GROUPS_WARM: Final = {0x06: 9, 0x15: 9, 0x17: 9}
_UNITS: Final = {"J": ("Wh", 1 / 3600), "J/h": ("W", 1 / 3600)}
_TEMPS: Final = {"flow_temperature": 10, "return_temperature": 11, "temperature_difference": 12}


def medium_group(medium: int) -> int:
    """The OBIS A group of an M-Bus medium code."""
    return _GROUPS.get(medium) or _GROUPS_WARM.get(medium, 0)


@dataclass(frozen=True, slots=True)
class MbusReadings:
    """Rows of one telegram: the batch, each row's record as hex, and the meter's own clock (ISO, local)."""

    batch: ReadingBatch
    sources: tuple[str, ...]
    clock: str | None


def _channel(a: int, r: DataRecord) -> tuple[int, int, bool] | None:
    """(C, D, uses_tariff) of a record, or None when it is not a reading."""
    negative = "accumulation_negative" in r.modifiers
    q = r.quantity
    if q == "energy":
        return (2 if negative and a == 1 else 1), 8, True
    if q == "reactive_energy":
        return 3, 8, True
    if q == "volume":
        return (2 if a in (5, 6) else 3 if a == 7 else 1), 8, True
    if q == "power":
        return (2 if negative and a == 1 else 1), 7, False
    if q == "volume_flow":
        return (2 if a in (5, 6) else 3 if a == 7 else 1), 7, False
    if q in _TEMPS:
        return _TEMPS[q], 7, False
    if q == "external_temperature":
        return 13, 7, False
    if q == "voltage":
        return 32, 7, False
    if q == "current":
        return 31, 7, False
    if q == "hca_units":
        return 1, 8, True
    return None


def mbus_readings(
    header: DeviceHeader | None,
    records: Iterable[DataRecord],
    *,
    received_ts: int,
    meter: str | None = None,
    source: Source = MBUS_SOURCE,
) -> MbusReadings:
    """The current values of ``records`` as readings of ``meter`` (default: the ident number)."""
    name = meter or (header.ident if header is not None else "unknown")
    a = medium_group(header.medium) if header is not None else 0
    seen: set[str] = set()
    obis: list[str] = []
    values: list[float] = []
    units: list[str] = []
    sources: list[str] = []
    clock = None
    for r in records:
        if r.storage or r.function != "instantaneous":
            continue
        if r.quantity == "datetime" and isinstance(r.value, str) and clock is None:
            clock = r.value
        if not isinstance(r.value, float):
            continue
        channel = _channel(a, r)
        if channel is None:
            continue
        c, d, tariffed = channel
        group = 1 if r.quantity in ("voltage", "current") else a
        code = f"{group}-{r.subunit}:{c}.{d}.{r.tariff if tariffed else 0}"
        if code in seen or (r.tariff and not tariffed):
            continue
        seen.add(code)
        unit, factor = _UNITS.get(r.unit, (r.unit, 1.0))
        obis.append(code)
        values.append(r.value * factor)
        units.append(unit)
        sources.append(r.raw.hex())
    batch = ReadingBatch.from_columns(
        name, np.array(obis, dtype=object), np.full(len(obis), received_ts), values, unit=_objects(units),
        source=source,
    )  # fmt: skip
    return MbusReadings(batch, tuple(sources), clock)


def _objects(items: Sequence[str]) -> npt.NDArray[np.object_]:
    out = np.empty(len(items), dtype=object)
    out[:] = list(items)
    return out
