"""Energy blocks (tiers): how a bill period's energy of each TOU period falls into the tariff's blocks.

Each TOU period has its own block bounds (``CompiledTariff.period_tier_limits_wh``; inf past a period's own blocks).
The bounds that matter are those of the periods that occur in the bill period:

* they are all alike (one set of bounds, or a seasonal tariff whose periods of one season share theirs): the blocks
  count the period's TOTAL energy, as URDB and NREL SAM define tiers. *Pro rata*: each block's energy is split over
  the TOU periods by their share of the total; *chronological*: energy fills the blocks in time order.
* they differ (periods of one month with different bounds; SAM refuses such a rate): each TOU period's energy fills
  its OWN blocks. Allocation does not matter then: one period's total decides its blocks.

Bounds are per month (scaled by active days / period days) or per day (times the active days). Tiers work on the run
sums of the engine only: the chronological split telescopes over a run (``f(C_end) - f(C_start)``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from rating.compile import CompiledTariff

__all__ = ["group_sum", "tier_energy"]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
# inf bounds become a finite huge value: inf - inf would be NaN, and inf x 0 active days too
_HUGE = 1e300


def group_sum(run_values: F64, run_period: npt.NDArray[Any], n_periods: int) -> F64:
    """[M, P] sums of the run columns of each period."""
    onehot = np.zeros((len(run_period), n_periods))
    onehot[np.arange(len(run_period)), run_period] = 1.0
    return np.asarray(run_values @ onehot)


def _scaled(limits: F64, factor: F64) -> F64:
    """Bounds (any shape) times a per-meter factor [M] -> [M, *limits.shape]."""
    finite = np.where(np.isinf(limits), _HUGE, limits)
    out = finite[None, ...] * factor.reshape((-1,) + (1,) * limits.ndim)
    return np.asarray(np.where(np.isinf(limits)[None, ...], _HUGE, out))


def _shared(run_sum: F64, limits: F64, t: CompiledTariff, energy_p: F64, run_p: npt.NDArray[Any]) -> F64:
    """[M, P, K] with one set of bounds ``limits`` [M, K-1] counting the total energy."""
    m, n_p = energy_p.shape
    k = t.n_tiers
    lo = np.concatenate([np.zeros((m, 1)), limits], axis=1)
    hi = np.concatenate([limits, np.full((m, 1), np.inf)], axis=1)
    out = np.empty((m, n_p, k))
    if t.allocation == "pro_rata":
        total = energy_p.sum(axis=1)
        share = np.divide(energy_p, total[:, None], out=np.zeros_like(energy_p), where=total[:, None] > 0)
        for j in range(k):
            out[:, :, j] = share * (np.clip(total, lo[:, j], hi[:, j]) - lo[:, j])[:, None]
    else:  # chronological: tier energy within a run = f(C_end) - f(C_start), f = clip to the block
        cum = np.cumsum(run_sum, axis=1)
        prev = np.concatenate([np.zeros((m, 1)), cum[:, :-1]], axis=1)
        for j in range(k):
            part = np.clip(cum, lo[:, j : j + 1], hi[:, j : j + 1]) - np.clip(prev, lo[:, j : j + 1], hi[:, j : j + 1])
            out[:, :, j] = group_sum(part, run_p, n_p)
    return out


def tier_energy(t: CompiledTariff, run_sum: F64, run_p: npt.NDArray[Any], energy_p: F64, factor: F64) -> F64:
    """[M, P, K] energy (Wh) of each TOU period in each block; ``factor`` [M] scales the bounds (days)."""
    if t.n_tiers == 1:
        return energy_p[:, :, None]
    occurring = t.period_tier_limits_wh[np.unique(run_p)]
    if len(occurring) == 0 or bool(np.all(occurring == occurring[0])):
        base = occurring[0] if len(occurring) else t.period_tier_limits_wh[0]
        return _shared(run_sum, _scaled(base, factor), t, energy_p, run_p)
    limits = _scaled(t.period_tier_limits_wh, factor)  # [M, P, K-1]
    m, n_p = energy_p.shape
    lo = np.concatenate([np.zeros((m, n_p, 1)), limits], axis=2)
    hi = np.concatenate([limits, np.full((m, n_p, 1), np.inf)], axis=2)
    return np.asarray(np.clip(energy_p[:, :, None], lo, hi) - lo)
