"""DSMR timestamps ``YYMMDDhhmmssX`` (P1 companion standard 4.x/5.0 clause 6.12, DSMR 2.2/3.0 without ``X``).

``X`` is ``S`` (summer time, UTC+2) or ``W`` (winter time, UTC+1); the Europe/Amsterdam rules decide, and ``X``
says which of the two 02:xx hours of the autumn change is meant (DSMR 2.2/3.0 and the gas capture times of
``0-n:24.3.0`` have no ``X``). Belgian (e-MUCS), Luxembourg and Hungarian meters use the
same central-European clock, so one rule serves them all.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

__all__ = ["format_timestamp", "parse_timestamp"]

_AMS = ZoneInfo("Europe/Amsterdam")
_TS_RE = re.compile(r"(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})([SW]?)")


def parse_timestamp(text: str) -> int:
    """``YYMMDDhhmmss[S|W]`` (Dutch local time) -> epoch seconds UTC; ValueError when malformed."""
    m = _TS_RE.fullmatch(text.strip())
    if not m:
        raise ValueError(f"not a DSMR timestamp: {text!r}")
    yy, mo, dd, hh, mi, ss = (int(g) for g in m.groups()[:6])
    century = 1900 if yy >= 69 else 2000  # as strptime's %y: "700101000000W" is the epoch a meter writes for "unset"
    naive = datetime(century + yy, mo, dd, hh, mi, ss)  # ValueError for month 13, day 32, hour 25 ...
    # the flag only picks which of the autumn's twice-lived hour is meant: meters that write a stale flag (an e-MUCS
    # history month of March stamped "S") are read by the wall clock, as the Europe/Amsterdam rules have it
    return int(naive.replace(tzinfo=_AMS, fold=1 if m[7] == "W" else 0).timestamp())


def format_timestamp(ts: int) -> str:
    """Epoch seconds -> ``YYMMDDhhmmssX`` in Dutch local time (the inverse of :func:`parse_timestamp`)."""
    local = datetime.fromtimestamp(ts, UTC).astimezone(_AMS)
    flag = "S" if local.dst() else "W"
    return local.strftime("%y%m%d%H%M%S") + flag
