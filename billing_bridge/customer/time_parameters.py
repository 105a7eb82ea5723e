"""ESPI LocalTimeParameters of a time zone: the standard offset, the DST offset and the DST start/end rules.

ESPI (NAESB REQ.21, ``TimeConfiguration``) encodes each DST rule as a 32-bit map (``DstRuleType``)::

    bits  0-11  seconds 0-3599        bits 20-24  day of month (0 = not applicable)
    bits 12-16  hours 0-23            bits 25-27  operator: 0 on the day of month, 2..6 the 1st..5th weekday of
    bits 17-19  weekday 1-7 (Mon=1)               the month, 7 the last weekday of the month
    bits 28-31  month 1-12            0xFFFFFFFF: no DST

The rule is read off the zone's actual transitions in the given year: the local wall-clock time just before the
change (US Eastern: second Sunday of March 02:00 -> ``360E2000``, first Sunday of November 02:00 -> ``B40E2000``).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

__all__ = ["NO_DST", "TimeParameters", "dst_rule", "time_parameters"]

NO_DST = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class TimeParameters:
    """LocalTimeParameters: offsets in seconds, rules as 32-bit maps."""

    tz_offset_s: int  # standard time offset from UTC
    dst_offset_s: int  # added during DST (0 without DST)
    dst_start_rule: int
    dst_end_rule: int


def dst_rule(local_before: datetime) -> int:
    """The rule of a transition happening at the (naive) local wall-clock time ``local_before``."""
    day, month = local_before.day, local_before.month
    last_day = calendar.monthrange(local_before.year, month)[1]
    operator = 7 if day + 7 > last_day else (day - 1) // 7 + 2
    seconds = local_before.minute * 60 + local_before.second
    return seconds | local_before.hour << 12 | (local_before.isoweekday() << 17) | (operator << 25) | (month << 28)


def _offset(zone: ZoneInfo, ts: int) -> int:
    delta = datetime.fromtimestamp(ts, zone).utcoffset()
    return int(delta.total_seconds()) if delta is not None else 0


def _transitions(zone: ZoneInfo, year: int) -> list[int]:
    """UTC epoch seconds of each offset change in ``year`` (hourly scan, then bisection to the second)."""
    t = int(datetime(year, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(year + 1, 1, 1, tzinfo=UTC).timestamp())
    found = []
    prev = _offset(zone, t)
    while t < end:
        nxt = t + 3600
        now = _offset(zone, nxt)
        if now != prev:
            lo, hi = t, nxt  # offset(lo) == prev, offset(hi) == now
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if _offset(zone, mid) == prev else (lo, mid)
            found.append(hi)
            prev = now
        t = nxt
    return found


def time_parameters(tz: str, year: int) -> TimeParameters:
    """The LocalTimeParameters of zone ``tz`` as its rules stand in ``year``."""
    zone = ZoneInfo(tz)
    jan, jul = (datetime(year, m, 1, 12, tzinfo=zone) for m in (1, 7))
    dst = max(jan.dst() or timedelta(0), jul.dst() or timedelta(0))
    standard = (jan.utcoffset() or timedelta(0)) - (jan.dst() or timedelta(0))
    changes = _transitions(zone, year)
    if not dst or len(changes) < 2:
        return TimeParameters(int(standard.total_seconds()), 0, NO_DST, NO_DST)
    start_rule = end_rule = NO_DST
    for at in changes:
        before = datetime.fromtimestamp(at - 1, zone)
        wall = (before + timedelta(seconds=1)).replace(tzinfo=None)  # the wall clock before the change, e.g. 02:00
        if (datetime.fromtimestamp(at, zone).dst() or timedelta(0)) > (before.dst() or timedelta(0)):
            start_rule = dst_rule(wall)
        else:
            end_rule = dst_rule(wall)
    return TimeParameters(int(standard.total_seconds()), int(dst.total_seconds()), start_rule, end_rule)
