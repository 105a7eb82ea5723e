"""Tasmota telemetry: ``tele/{device}/SENSOR`` JSON with an ``ENERGY`` object (the device name is the meter id).

Tasmota's last will (``tele/{device}/LWT``: ``Online`` / ``Offline``) is a status message (:mod:`.events`).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np

from amiflow.types import Issue, ReadingBatch, Source, normalize_unit

from .envelope import Decoded, load_json, reject

__all__ = ["decode_tasmota"]

# ENERGY key -> (OBIS, wire unit, per-phase OBIS codes for L1..L3 when the value is a list)
_TASMOTA: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "Total": ("1-0:1.8.0", "kWh", ()),
    "ExportActive": ("1-0:2.8.0", "kWh", ()),
    "Power": ("1-0:1.7.0", "W", ("1-0:21.7.0", "1-0:41.7.0", "1-0:61.7.0")),
    "ReactivePower": ("1-0:3.7.0", "var", ()),
    "ApparentPower": ("1-0:9.7.0", "VA", ()),
    "Voltage": ("1-0:32.7.0", "V", ("1-0:32.7.0", "1-0:52.7.0", "1-0:72.7.0")),
    "Current": ("1-0:31.7.0", "A", ("1-0:31.7.0", "1-0:51.7.0", "1-0:71.7.0")),
}


def decode_tasmota(raw: bytes, *, device: str, utc_offset_s: int = 0) -> Decoded:
    """Decode Tasmota ``tele/{device}/SENSOR``; the device name is the meter id.

    Tasmota writes ``Time`` in the device's local time without an offset: ``utc_offset_s`` says what that offset
    is (the device's ``Timezone``; 0 when it runs on UTC). Per-phase lists of totals are summed.
    """
    doc, bad = load_json(raw, device)
    if bad is not None:
        return bad
    if not isinstance(doc, dict) or not isinstance(doc.get("ENERGY"), dict):
        return reject("schema", "expected an object with an 'ENERGY' object", device, raw)
    t_raw = doc.get("Time")
    t = None
    if isinstance(t_raw, str):
        try:
            dt = datetime.fromisoformat(t_raw)
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=timezone(timedelta(seconds=utc_offset_s)))
            t = math.floor(dt.astimezone(UTC).timestamp())
        except ValueError:
            t = None
    if t is None:
        return reject("bad_ts", f"Tasmota 'Time' {t_raw!r}", device, raw)
    obis: list[str] = []
    units: list[str] = []
    values: list[float] = []
    issues: list[Issue] = []
    for key, (code, unit, phases) in _TASMOTA.items():
        v = doc["ENERGY"].get(key)
        if v is None:
            continue
        items: list[tuple[str, Any]]
        if isinstance(v, list):
            items = [(code, sum(v))] if not phases and _all_numbers(v) else list(zip(phases, v, strict=False))
        else:
            items = [(code, v)]
        base, factor = normalize_unit(unit)
        for c, x in items:
            if not isinstance(x, int | float) or isinstance(x, bool) or not math.isfinite(x):
                issues.append(Issue("not_finite" if isinstance(x, float) else "schema", f"{key}={x!r}", device, raw))
                continue
            obis.append(c)
            units.append(base)
            values.append(float(x) * factor)
    batch = ReadingBatch.from_columns(
        device,
        np.array(obis, dtype=object),
        np.full(len(obis), t),
        values,
        unit=np.array(units, dtype=object),
        source=int(Source.TASMOTA),
    )
    return Decoded(batch=batch, issues=tuple(issues))


def _all_numbers(v: list[Any]) -> bool:
    return all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)
