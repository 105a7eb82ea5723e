"""DSMR timestamps ``YYMMDDhhmmssX`` (P1 companion standard 4.x/5.0 clause 6.12, DSMR 2.2/3.0 without ``X``).

``X`` is ``S`` (summer time, UTC+2) or ``W`` (winter time, UTC+1); without it the Europe/Amsterdam rules decide
(DSMR 2.2/3.0 and the gas capture times of ``0-n:24.3.0``). Belgian (e-MUCS), Luxembourg and Hungarian meters use the
same central-European clock, so one rule serves them all.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

__all__ = ["format_timestamp", "parse_timestamp"]

_AMS = ZoneInfo("Europe/Amsterdam")
_SUMMER = timezone(timedelta(hours=2))
_WINTER = timezone(timedelta(hours=1))
_TS_RE = re.compile(r"(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})([SW]?)")


def parse_timestamp(text: str) -> int:
    """``YYMMDDhhmmss[S|W]`` (Dutch local time) -> epoch seconds UTC; ValueError when malformed."""
    m = _TS_RE.fullmatch(text.strip())
    if not m:
        raise ValueError(f"not a DSMR timestamp: {text!r}")
    yy, mo, dd, hh, mi, ss = (int(g) for g in m.groups()[:6])
    century = 1900 if yy >= 69 else 2000  # as strptime's %y: "700101000000W" is the epoch a meter writes for "unset"
    naive = datetime(century + yy, mo, dd, hh, mi, ss)  # ValueError for month 13, day 32, hour 25 ...
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
