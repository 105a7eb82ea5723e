"""The VEE pipeline: validate, estimate, flag, and summarize per meter.

``run_vee(inp, cfg)`` returns the period's pre-VEE values (as stored, NaN = missing), the post-VEE values (what is
billed), the QualityFlag bits of each interval after VEE (the stored bits plus ESTIMATED / EDITED / SUSPECT /
SPIKE / NEGATIVE / OUTAGE / CLOCK_SKEW / DUPLICATE_SOURCE set by the rules), the rule bits, the estimation method
per cell, and per meter the counts per rule, the estimated share and the hold reason (None = billable).

Pure numpy over the whole block; no loop over meters or intervals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from amiflow.types import QualityFlag
from rating.vee.estimate import METHODS, interpolate, like_day, scale_to_register
from rating.vee.rules import RULES, Validation, VeeConfig, VeeInput, rule, validate

__all__ = ["VeeResult", "run_vee"]

B = npt.NDArray[np.bool_]
I8 = npt.NDArray[np.int8]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

_ESTIMATE_CODES = tuple(r.code for r in RULES if r.action == "estimate")


@dataclass(frozen=True, slots=True)
class VeeResult:
    """VEE of M meters over the P intervals of the period (columns aligned with ``ts``)."""

    ts: I64  # (P,) interval ends, UTC epoch s
    pre: F64  # (M, P) as stored, NaN = missing
    post: F64  # (M, P) validated and estimated (NaN only for held no_data meters)
    flags: I32  # (M, P) QualityFlag bits after VEE
    rule_bits: I32  # (M, P) bit r = RULES[r] fired (interval rules)
    method: I8  # (M, P) index into estimate.METHODS (0 = not estimated)
    counts: Mapping[str, I64]  # rule code -> (M,) intervals (interval rules) or 0/1 (meter rules)
    hold: tuple[str | None, ...]  # (M,) the first hold rule that fired, None = billable

    @property
    def estimated(self) -> B:
        """(M, P) cells whose billed value is an estimate."""
        return np.asarray(self.method != 0, dtype=bool)

    @property
    def estimated_share(self) -> F64:
        """(M,) estimated intervals / period intervals."""
        p = max(self.pre.shape[1], 1)
        return np.asarray(self.estimated.sum(axis=1) / p, dtype=np.float64)

    @property
    def changed(self) -> B:
        """(M, P) cells whose value or flags VEE changed or set: the rows stored as pre/post versions."""
        return np.asarray(self.estimated | (self.rule_bits != 0), dtype=bool)

    def summary(self, i: int) -> dict[str, Any]:
        """The ``vee`` object of meter ``i``'s bill: counts per fired rule and per method, estimated share, hold."""
        est = self.method[i]
        return {
            "intervals": int(self.pre.shape[1]),
            "estimated": int((est != 0).sum()),
            "edited": int(((self.flags[i] & np.int32(QualityFlag.EDITED)) != 0).sum()),
            "estimated_share": round(float((est != 0).sum() / max(self.pre.shape[1], 1)), 6),
            "rules": {code: int(v[i]) for code, v in self.counts.items() if int(v[i])},
            "methods": {METHODS[k]: int((est == k).sum()) for k in range(1, len(METHODS)) if (est == k).any()},
            "hold": self.hold[i],
        }


def _estimate(inp: VeeInput, val: Validation, cfg: VeeConfig) -> tuple[F64, I8]:
    """(post values of the whole matrix, method per cell). Only the rows with something to estimate are worked on."""
    p0 = inp.period_from
    values = inp.values
    m, t = inp.shape
    bad = np.zeros((m, t - p0), dtype=bool)
    for code in _ESTIMATE_CODES:
        bad |= val.fired(code)
    method = np.zeros((m, t), dtype=np.int8)
    work = values.copy()
    rows = np.flatnonzero(bad.any(axis=1))
    if not len(rows):
        return work, method
    sub = values[rows]
    invalid = np.isnan(sub) | (sub < 0)
    invalid[:, p0:] |= bad[rows]
    targets = np.zeros(sub.shape, dtype=bool)
    targets[:, p0:] = bad[rows]
    how = np.zeros(sub.shape, dtype=np.int8)
    w = np.where(invalid, np.nan, sub)
    if inp.outage is not None:  # a meter without power consumed nothing: its lost intervals are zero
        dark = targets & inp.outage[rows]
        w[dark] = 0.0
        how[dark] = METHODS.index("outage")
        targets &= ~dark
    valid = ~np.isnan(w) & ~targets
    w, filled = interpolate(w, valid, targets, inp.step_s, cfg.max_interp_s)
    how[filled] = METHODS.index("interpolated")
    targets &= ~filled
    est, kind = like_day(sub, valid & ~invalid, targets, inp.local_s, inp.step_s, cfg.like_day_weeks)
    w[targets] = est[targets]
    how[targets] = kind[targets]
    if inp.register_delta_wh is not None:
        scaled = (how[:, p0:] >= METHODS.index("like_day")) & (how[:, p0:] <= METHODS.index("mean"))
        w[:, p0:] = scale_to_register(w[:, p0:], scaled, inp.register_delta_wh[rows])
    work[rows] = w
    method[rows] = how
    return work, method


def _flags(inp: VeeInput, val: Validation, method: I8) -> I32:
    p0 = inp.period_from
    m, t = inp.shape
    flags = inp.quality[:, p0:].copy() if inp.quality is not None else np.zeros((m, t - p0), dtype=np.int32)
    for r in RULES:
        if r.level != "interval":
            continue
        fired = val.fired(r.code)
        if r.flag:
            flags[fired] |= np.int32(r.flag)
        if r.action == "flag":
            flags[fired] |= np.int32(QualityFlag.SUSPECT)
    est = method[:, p0:] != 0
    flags[est] |= np.int32(QualityFlag.ESTIMATED)
    flags[est & ~np.isnan(inp.values[:, p0:])] |= np.int32(QualityFlag.EDITED)
    if inp.outage is not None:
        flags[inp.outage[:, p0:]] |= np.int32(QualityFlag.OUTAGE)
    return flags


def _meter_counts(inp: VeeInput, val: Validation, post: F64, cfg: VeeConfig) -> dict[str, B]:
    p0 = inp.period_from
    m, _ = inp.shape
    meter = dict(val.meter_rules)
    delta = inp.register_delta_wh if inp.register_delta_wh is not None else np.full(m, np.nan)
    total = np.nansum(post[:, p0:], axis=1)
    meter["sum_check"] = np.asarray(
        np.isfinite(delta) & (np.abs(total - delta) > np.fmax(cfg.sum_rel_tol * delta, cfg.sum_abs_tol_wh)), dtype=bool
    )
    meter["no_data"] = np.asarray(np.isnan(post[:, p0:]).any(axis=1), dtype=bool)
    return meter


def run_vee(inp: VeeInput, cfg: VeeConfig | None = None) -> VeeResult:
    """Validate and estimate the period columns of ``inp``; see the module docstring."""
    cfg = cfg or VeeConfig()
    p0 = inp.period_from
    m, t = inp.shape
    if inp.local_s.shape != (t,) or inp.ts.shape != (t,) or not 0 <= p0 <= t:
        raise ValueError(f"VEE input: values {inp.values.shape}, ts {inp.ts.shape}, local_s {inp.local_s.shape}")
    val = validate(inp, cfg)
    post, method = _estimate(inp, val, cfg)
    flags = _flags(inp, val, method)
    meter = _meter_counts(inp, val, post, cfg)
    counts: dict[str, I64] = {}
    for r in RULES:
        if r.level == "interval":
            counts[r.code] = val.fired(r.code).sum(axis=1).astype(np.int64)
        else:
            counts[r.code] = meter[r.code].astype(np.int64)
    hold_codes = (*cfg.hold, "no_data")
    hold: list[str | None] = [None] * m
    for code in reversed(hold_codes):  # the first listed code wins
        rule(code)
        for i in np.flatnonzero(meter[code]).tolist():
            hold[i] = code
    return VeeResult(
        ts=inp.ts[p0:],
        pre=inp.values[:, p0:],
        post=post[:, p0:],
        flags=flags,
        rule_bits=val.rule_bits,
        method=method[:, p0:],
        counts=counts,
        hold=tuple(hold),
    )
