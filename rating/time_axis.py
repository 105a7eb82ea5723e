"""The time axis of a block: the local month, hour, day and day type of each interval, shared by all its meters.

``ts`` are interval END instants (UTC epoch seconds, uniform step); an interval is placed in local time by its START
(``ts - step``), so the 15 minutes ending 16:00 belong to hour 15. A day is a local calendar day, so DST days hold 92
or 100 quarter hours and every hour of the day is still looked up once per interval. Holidays come from the tariff's
calendar. Build it once per (``ts``, time zone) and pass it to :func:`rating.engine.rate_block` for every block.
"""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt

from amiflow.errors import RatingError
from rating.compile import CompiledTariff
from rating.local_time import local_start_s

__all__ = ["TimeAxis", "build_axis"]

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class TimeAxis:
    """Local-time facts of each interval of a block (shared by all its meters)."""

    ts: I64  # interval ends, UTC epoch s
    step_s: int
    tz: str
    local_start_s: I64  # interval start as local wall-clock seconds since 1970-01-01
    day: I64  # local day number
    month: npt.NDArray[np.int8]  # 0-11
    hour: npt.NDArray[np.int8]
    day_type: npt.NDArray[np.int8]  # 0 weekday, 1 weekend, 2 holiday


def build_axis(tariff: CompiledTariff, ts: npt.ArrayLike, tz: str) -> TimeAxis:
    """Local month, hour, day and day type (holidays of ``tariff``) of each interval ending at ``ts``."""
    ts = np.asarray(ts, dtype=np.int64)
    if ts.ndim != 1 or len(ts) < 2:
        raise RatingError("usage needs at least two intervals")
    steps = np.diff(ts)
    step = int(steps[0])
    if step <= 0 or 3600 % step or not np.all(steps == step):
        raise RatingError("interval timestamps must be ascending with one uniform step dividing an hour")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise RatingError(f"unknown time zone {tz!r}") from None
    local = local_start_s(ts, step, tz)
    day = local // 86400
    month = (day.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) % 12).astype(np.int8)
    hour = ((local % 86400) // 3600).astype(np.int8)
    day_type = (((day + 3) % 7) >= 5).astype(np.int8)  # 1970-01-01 was a Thursday; Monday = 0
    years = np.unique(day.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970)
    holidays = tariff.holiday_days(int(y) for y in years)
    day_type[np.isin(day, holidays)] = 2
    return TimeAxis(ts, step, tz, local, day, month, hour, day_type)
