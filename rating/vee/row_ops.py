"""Row-wise operations of VEE on (meters x intervals) matrices: run lengths, the nearest valid column before and
after each cell, and per-slot means of the valid values.

All functions work on whole matrices at once; none loops over meters or intervals.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["prev_next_valid", "run_lengths", "slot_means"]

B = npt.NDArray[np.bool_]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


def run_lengths(mask: B) -> I64:
    """For each True cell of ``mask`` (M, T), the length of the run of True cells along its row; 0 elsewhere."""
    m, t = mask.shape
    if m == 0 or t == 0:
        return np.zeros(mask.shape, dtype=np.int64)
    padded = np.zeros((m, t + 1), dtype=bool)
    padded[:, :t] = mask
    flat = padded.ravel()
    edges = np.diff(np.concatenate(([False], flat)).astype(np.int8))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    out = np.zeros(flat.shape, dtype=np.int64)
    if len(starts):
        lengths = ends - starts
        # cumulative-sum trick: +len at each start, -len at each end fills every run with its length
        marks = np.zeros(flat.shape[0] + 1, dtype=np.int64)
        marks[starts] += lengths
        marks[ends] -= lengths
        out = np.cumsum(marks[:-1])
        out[~flat] = 0
    return out.reshape(m, t + 1)[:, :t]


def prev_next_valid(valid: B) -> tuple[I64, I64]:
    """Column of the nearest valid cell at or before (-1 if none) and at or after (T if none) each cell."""
    m, t = valid.shape
    cols = np.broadcast_to(np.arange(t, dtype=np.int64), (m, t))
    prev = np.maximum.accumulate(np.where(valid, cols, -1), axis=1)
    nxt = np.minimum.accumulate(np.where(valid, cols, t)[:, ::-1], axis=1)[:, ::-1]
    return prev, nxt


def slot_means(values: F64, valid: B, slot: I64, n_slots: int) -> F64:
    """Mean of the valid values of each row per slot of the day (``slot`` per column); NaN where none."""
    order = np.argsort(slot, kind="stable")
    s_sorted = slot[order]
    bounds = np.minimum(np.searchsorted(s_sorted, np.arange(n_slots)), max(len(slot) - 1, 0))
    present = np.isin(np.arange(n_slots), s_sorted)
    x = np.where(valid, values, 0.0)[:, order]
    n = valid[:, order].astype(np.float64)
    sums = np.add.reduceat(x, bounds, axis=1) if x.shape[1] else np.zeros((values.shape[0], n_slots))
    counts = np.add.reduceat(n, bounds, axis=1) if x.shape[1] else np.zeros((values.shape[0], n_slots))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = sums / counts
    out[:, ~present] = np.nan
    out[counts == 0] = np.nan
    return out
