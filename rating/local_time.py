"""Local wall-clock time of UTC instants, shared by the rating engine's time axis and VEE.

Intervals are stamped by their END (UTC epoch seconds); an interval belongs to the local time of its START, so the 15
minutes ending 16:00 belong to hour 15. Offsets are looked up once per distinct UTC day and refined per instant only
on days where the offset changes (DST), so any zone works, including those with half-hour shifts.
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

__all__ = ["local_midnight_ts", "local_start_s"]

I64 = npt.NDArray[np.int64]


def local_midnight_ts(day: date, tz: ZoneInfo) -> int:
    """UTC epoch seconds of local midnight starting ``day``."""
    return int(datetime(day.year, day.month, day.day, tzinfo=tz).timestamp())


def local_start_s(ts: npt.ArrayLike, step_s: int, tz: str) -> I64:
    """Local wall-clock seconds since 1970-01-01 of each interval START (``ts`` are interval ends, UTC epoch s)."""
    ends = np.asarray(ts, dtype=np.int64)
    start = ends - step_s
    if not len(start):
        return start
    zone = ZoneInfo(tz)

    def offset(s: int) -> int:
        delta = datetime.fromtimestamp(s, zone).utcoffset()
        return int(delta.total_seconds()) if delta is not None else 0

    days = start // 86400
    uniq = np.unique(days)
    at = np.array([offset(int(d) * 86400) for d in uniq] + [offset(int(uniq[-1] + 1) * 86400)], dtype=np.int64)
    out = at[np.searchsorted(uniq, days)]
    for d in uniq[at[:-1] != at[1:]]:
        sel = np.flatnonzero(days == d)
        out[sel] = [offset(int(s)) for s in start[sel]]
    return start + out
