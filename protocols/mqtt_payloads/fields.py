"""The fields of a reading, checked and normalised: timestamps, OBIS codes, units (all cached, all pure).

Timestamps are epoch seconds (UTC); ISO 8601 strings must carry an offset or ``Z``. Energy channels (OBIS quantity
group C per IEC 62056-6-1, :func:`amiflow.types.channel_kind`) must carry an energy unit (Wh, varh, VAh).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from amiflow.types import ChannelKind, channel_kind, normalize_unit, parse_obis

__all__ = ["TS_CACHE", "obis_kind", "parse_ts", "unit_factor", "unit_fits"]

# base unit each channel kind may carry, by OBIS quantity group C (IEC 62056-6-1): energy channels need Wh/varh
_ENERGY_KINDS = (ChannelKind.INTERVAL, ChannelKind.REGISTER)
TS_CACHE: dict[str, int] = {}  # ISO text -> epoch s; the readings decoder's fast path reads it directly


def parse_ts(value: Any) -> int | None:
    """ISO 8601 with an offset (or ``Z``), or epoch seconds as a number, to epoch seconds; None if invalid."""
    if isinstance(value, str):
        cached = TS_CACHE.get(value)
        if cached is not None:
            return cached
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            return None
        if dt.tzinfo is None or dt.year < 1971 or dt.year > 9000:
            return None
        out = math.floor(dt.timestamp())
        if len(TS_CACHE) > 200_000:  # timestamps repeat across a fleet's messages; the cache stays bounded
            TS_CACHE.clear()
        TS_CACHE[value] = out
        return out
    numeric = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if numeric and 31_536_000 <= value < 253_402_300_800:  # 1971 .. 9999
        return int(value)
    return None


_OBIS_CACHE: dict[str, tuple[str, ChannelKind] | None] = {}


def obis_kind(code: Any) -> tuple[str, ChannelKind] | None:
    """(normalised OBIS text, channel kind) of an OBIS code; None when it is not one."""
    if not isinstance(code, str):
        return None
    hit = _OBIS_CACHE.get(code, ...)
    if hit is not ...:
        return hit
    try:
        parsed = parse_obis(code)
        out: tuple[str, ChannelKind] | None = (str(parsed), channel_kind(parsed))
    except ValueError:
        out = None
    if len(_OBIS_CACHE) < 10_000:
        _OBIS_CACHE[code] = out
    return out


def unit_factor(unit: Any) -> tuple[str, float] | None:
    """(base unit, factor to it) of a unit name; None when unknown."""
    if not isinstance(unit, str):
        return None
    try:
        return normalize_unit(unit)
    except ValueError:
        return None


def unit_fits(kind: ChannelKind, base: str) -> bool:
    """An energy channel needs an energy unit; other channels take any known unit."""
    return kind not in _ENERGY_KINDS or base in ("Wh", "varh", "VAh")
