"""VEE estimation: linear interpolation of short gaps, the like-day profile beyond, scaling to a register delta.

Methods, in order (each cell gets the first that applies):

1. ``interpolated``: a gap of at most ``max_interp_s`` between two valid intervals of the same meter is filled on the
   straight line between the two neighbouring interval values;
2. ``like_day``: the mean of the valid values at the same local weekday and time of day in the previous N weeks
   (matched on local wall-clock time, so a DST change does not shift the profile by an hour);
3. ``profile``: the meter's mean valid value at that local time of day over everything read (history and period);
4. ``mean``: the meter's mean valid value.

Cells filled by 2-4 are then scaled together so the period total meets the register delta when one is known and
leaves a non-negative remainder for them (see :func:`scale_to_register`). Pure numpy; no I/O.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from rating.vee.row_ops import prev_next_valid, slot_means

__all__ = ["METHODS", "interpolate", "like_day", "scale_to_register"]

B = npt.NDArray[np.bool_]
I8 = npt.NDArray[np.int8]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

METHODS = ("none", "interpolated", "like_day", "profile", "mean", "outage")
_WEEK_S = 7 * 86400


def interpolate(values: F64, valid: B, targets: B, step_s: int, max_gap_s: int) -> tuple[F64, B]:
    """Fill ``targets`` that sit in a gap of invalid cells no longer than ``max_gap_s`` between two valid cells.

    Returns (values with those cells filled, mask of the filled cells).
    """
    prev, nxt = prev_next_valid(valid)
    t = values.shape[1]
    gap = nxt - prev - 1
    ok = targets & (prev >= 0) & (nxt < t) & (gap * step_s <= max_gap_s)
    r, c = np.nonzero(ok)
    out = values.copy()
    if len(r):
        p, n = prev[r, c], nxt[r, c]
        a, b = values[r, p], values[r, n]
        out[r, c] = a + (b - a) * (c - p) / (n - p)
    return out, ok


def like_day(values: F64, valid: B, targets: B, local_s: I64, step_s: int, weeks: int) -> tuple[F64, I8]:
    """Estimates for ``targets`` from the like-day profile, with the profile and mean fallbacks.

    Returns (estimates, NaN where nothing is known about the meter; method index into METHODS per cell, 0 = none).
    """
    est = np.full(values.shape, np.nan)
    method = np.zeros(values.shape, dtype=np.int8)
    r, c = np.nonzero(targets)
    if not len(r):
        return est, method
    order = np.argsort(local_s, kind="stable")
    sorted_s = local_s[order]
    total = np.zeros(len(r))
    count = np.zeros(len(r))
    for k in range(1, weeks + 1):  # one vectorized step per week of look-back
        want = local_s[c] - k * _WEEK_S
        pos = np.minimum(np.searchsorted(sorted_s, want), len(sorted_s) - 1)
        ref = order[pos]
        hit = (sorted_s[pos] == want) & valid[r, ref]
        total[hit] += values[r[hit], ref[hit]]
        count[hit] += 1
    got = count > 0
    est[r[got], c[got]] = total[got] / count[got]
    method[r[got], c[got]] = METHODS.index("like_day")
    rest = ~got
    if rest.any():
        rows = np.unique(r[rest])
        slot = (local_s % 86400) // step_s
        means = slot_means(values[rows], valid[rows], slot, 86400 // step_s)
        row_pos = np.searchsorted(rows, r[rest])
        prof = means[row_pos, slot[c[rest]]]
        with np.errstate(invalid="ignore", divide="ignore"):
            meter_mean = np.where(valid[rows], values[rows], 0.0).sum(axis=1) / valid[rows].sum(axis=1)
        fallback = np.where(np.isnan(prof), meter_mean[row_pos], prof)
        est[r[rest], c[rest]] = fallback
        method[r[rest], c[rest]] = np.where(
            np.isnan(prof), np.where(np.isnan(fallback), 0, METHODS.index("mean")), METHODS.index("profile")
        )
    return est, method


def scale_to_register(post: F64, scaled: B, delta_wh: F64) -> F64:
    """Scale the ``scaled`` cells of each row so the row sums to ``delta_wh`` (NaN = unknown: unchanged).

    Only when the cells not scaled leave a non-negative remainder; a remainder with all scaled cells at zero is
    spread evenly. Otherwise the row is left as it is (the sum check reports it).
    """
    out = post.copy()
    fixed = np.where(scaled, 0.0, np.nan_to_num(post)).sum(axis=1)
    current = np.where(scaled, np.nan_to_num(post), 0.0).sum(axis=1)
    n = scaled.sum(axis=1)
    remainder = delta_wh - fixed
    ok = np.isfinite(delta_wh) & (n > 0) & (remainder >= 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        factor = np.where(ok & (current > 0), remainder / current, 1.0)
        even = np.where(ok & (current <= 0), remainder / np.maximum(n, 1), np.nan)
    out = np.where(scaled, out * factor[:, None], out)
    spread = scaled & ~np.isnan(even)[:, None]
    out[spread] = np.broadcast_to(even[:, None], out.shape)[spread]
    return out
