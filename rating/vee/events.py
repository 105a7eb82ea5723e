"""Meter events as VEE inputs: outage windows (power_down .. power_up) as a (meters x intervals) mask.

An interval (end - step, end] is covered when it overlaps a window. A power_down without a later power_up covers the
rest of the read range (the meter is still dark); a power_up whose power_down came before the range covers from the
start. Pure numpy.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["outage_mask"]


def outage_mask(
    ts: npt.ArrayLike,
    step_s: int,
    meters: int,
    row: npt.ArrayLike,
    event_ts: npt.ArrayLike,
    is_down: npt.ArrayLike,
) -> npt.NDArray[np.bool_]:
    """(meters, T) True where an interval ending at ``ts`` overlaps an outage of its meter.

    ``row`` (meter row), ``event_ts`` (epoch s) and ``is_down`` (True = power_down, False = power_up) describe the
    events, in any order.
    """
    ends = np.asarray(ts, dtype=np.int64)
    r = np.asarray(row, dtype=np.int64)
    at = np.asarray(event_ts, dtype=np.int64)
    down = np.asarray(is_down, dtype=bool)
    t = len(ends)
    mask = np.zeros((meters, t + 1), dtype=np.int64)
    if len(r) == 0 or t == 0:
        return np.zeros((meters, t), dtype=bool)
    order = np.lexsort((~down, at, r))  # per meter by time; a down and an up at the same instant: down first
    r, at, down = r[order], at[order], down[order]
    n = len(r)
    pos = np.arange(n)
    next_up = np.minimum.accumulate(np.where(~down, pos, n)[::-1])[::-1]
    prev_down = np.maximum.accumulate(np.where(down, pos, -1))
    big = np.iinfo(np.int64).max // 2
    first_of_meter = np.concatenate(([True], r[1:] != r[:-1]))
    meter_start = np.maximum.accumulate(np.where(first_of_meter, pos, 0))
    # windows opened by a power_down: until the next power_up of the same meter, else open-ended
    d = np.flatnonzero(down)
    up_ok = (next_up[d] < n) & (r[np.minimum(next_up[d], n - 1)] == r[d])
    lo = at[d]
    hi = np.where(up_ok, at[np.minimum(next_up[d], n - 1)], big)
    rows = r[d]
    # a power_up with no power_down of its meter before it: dark since before the range
    u = np.flatnonzero(~down)
    orphan = prev_down[u] < meter_start[u]
    lo = np.concatenate((lo, np.full(int(orphan.sum()), -big)))
    hi = np.concatenate((hi, at[u[orphan]]))
    rows = np.concatenate((rows, r[u[orphan]]))
    first = np.searchsorted(ends, lo, side="right")  # first interval ending after the outage began
    stop = np.searchsorted(ends - step_s, hi, side="left")  # first interval starting at/after power returned
    keep = stop > first
    np.add.at(mask, (rows[keep], first[keep]), 1)
    np.add.at(mask, (rows[keep], stop[keep]), -1)
    return np.cumsum(mask, axis=1)[:, :t] > 0
