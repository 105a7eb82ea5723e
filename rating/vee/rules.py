"""VEE validation rules: stable codes, parameters, and the checks over a (meters x intervals) energy matrix.

Every rule has a stable ``code`` (stored in ``amiflow.vee_intervals.rules`` as bit ``bit``, named in bills' ``vee``
summaries and in ``amiflow.vee_rules``), a level (``interval`` rules mark cells, ``meter`` rules judge the whole
period) and an action: ``estimate`` (the cell is replaced by an estimate, the original kept), ``flag`` (the value is
kept and marked SUSPECT) or ``hold`` (the meter's bill is held for review; the billing run skips it with reason
``vee_hold:<code>``). Parameters live in :class:`VeeConfig`; docs/vee-billing.md gives each rule's exact test.

Pure: numpy only, no I/O, clock or logging.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from amiflow.types import QualityFlag
from rating.vee.row_ops import run_lengths

__all__ = ["RULES", "Rule", "Validation", "VeeConfig", "VeeInput", "rule", "validate"]

B = npt.NDArray[np.bool_]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Rule:
    """One validation rule. ``bit`` indexes the per-interval rule mask; ``flag`` is the QualityFlag it sets."""

    code: str
    bit: int
    level: str  # "interval" | "meter"
    action: str  # "estimate" | "flag" | "hold"
    flag: QualityFlag
    description: str


RULES: tuple[Rule, ...] = (
    Rule("missing", 0, "interval", "estimate", QualityFlag(0), "no reading stored for the interval"),
    Rule("negative", 1, "interval", "estimate", QualityFlag.NEGATIVE, "negative energy on an import channel"),
    Rule("spike_neighbours", 2, "interval", "estimate", QualityFlag.SPIKE, "far above both neighbours"),
    Rule("spike_history", 3, "interval", "flag", QualityFlag.SPIKE, "far above the meter's historical high"),
    Rule("high_usage", 4, "interval", "flag", QualityFlag(0), "day far above the meter's average daily usage"),
    Rule("low_usage", 5, "interval", "flag", QualityFlag(0), "day far below the meter's average daily usage"),
    Rule("zero_consumption", 6, "interval", "flag", QualityFlag(0), "long run of zeros not covered by an outage"),
    Rule("duplicate", 7, "interval", "flag", QualityFlag.DUPLICATE_SOURCE, "duplicate source or a repeated day"),
    Rule("clock_drift", 8, "interval", "flag", QualityFlag.CLOCK_SKEW, "meter clock outside tolerance"),
    Rule("sum_check", 9, "meter", "hold", QualityFlag(0), "intervals disagree with the register delta"),
    Rule("multiplier", 10, "meter", "hold", QualityFlag(0), "intervals/register ratio equals the CT x VT ratio"),
    Rule("unit", 11, "meter", "hold", QualityFlag(0), "values 1000x off (Wh vs kWh)"),
    Rule("no_data", 12, "meter", "hold", QualityFlag(0), "no usable reading in the period or its history"),
)
_BY_CODE = {r.code: r for r in RULES}


def rule(code: str) -> Rule:
    """The rule with ``code`` (KeyError for an unknown code)."""
    return _BY_CODE[code]


@dataclass(frozen=True, slots=True)
class VeeConfig:
    """Parameters of the rules and of estimation (defaults are what the billing run uses)."""

    max_interp_s: int = 3600  # gaps up to this long are interpolated linearly; longer ones use the like-day profile
    like_day_weeks: int = 4  # like-day profile: same weekday and local time, previous N weeks
    spike_factor: float = 10.0  # spike_neighbours: value > factor x mean of its valid neighbours ...
    spike_floor_wh: float = 100.0  # ... and > factor x this floor (near-zero neighbours do not make spikes)
    spike_history_factor: float = 4.0  # spike_history: value > factor x the 99th percentile of the history
    min_history_intervals: int = 7 * 96  # history needed by spike_history/high/low/unit (a week of 15-min data)
    high_factor: float = 4.0  # high_usage: day total > factor x average daily usage
    low_factor: float = 0.05  # low_usage: complete day total < factor x average daily usage
    min_daily_wh: float = 1000.0  # high/low are judged only for meters averaging at least this per day
    zero_run_s: int = 86400  # zero_consumption: a run of zeros at least this long
    sum_rel_tol: float = 0.01  # sum_check: |sum(post) - register delta| > max(rel x delta, abs)
    sum_abs_tol_wh: float = 100.0
    ratio_tol: float = 0.05  # multiplier/unit: the intervals/register ratio within 5 % of the factor
    clock_tolerance_s: float = 60.0  # clock_drift: a clock correction larger than this in the period
    hold: tuple[str, ...] = ("unit", "multiplier", "sum_check")  # codes that hold the bill


@dataclass(frozen=True, slots=True)
class VeeInput:
    """What VEE sees for M meters of one channel (active energy import, Wh per interval).

    ``values`` (M, T) with NaN where missing; columns ``[:period_from]`` are history (read before the period, used
    only as reference), ``[period_from:]`` the period that is validated and estimated. ``local_s`` (T) local
    wall-clock seconds of each interval start (from :func:`rating.vee.local_start_s`). Optional per-cell
    ``quality`` (stored QualityFlag bits) and ``outage`` (covered by power_down..power_up); per-meter
    ``register_delta_wh`` (register at period end - at period start, NaN unknown), ``multiplier`` (CT x VT ratio)
    and ``clock_offset_s`` (largest clock correction seen in the period, NaN unknown).
    """

    ts: I64
    values: F64
    period_from: int
    local_s: I64
    step_s: int = 900
    quality: I32 | None = None
    outage: B | None = None
    register_delta_wh: F64 | None = None
    multiplier: F64 | None = None
    clock_offset_s: F64 | None = None

    @property
    def shape(self) -> tuple[int, int]:
        m, t = self.values.shape
        return m, t


@dataclass(frozen=True, slots=True)
class Validation:
    """Result of :func:`validate` over the period columns: per-cell rule bits and per-meter rule verdicts."""

    rule_bits: I32  # (M, P) bit r set where interval rule r fired
    meter_rules: dict[str, B] = field(default_factory=dict)  # meter-level code -> (M,) fired
    avg_daily_wh: F64 | None = None  # (M,) reference daily usage (NaN unknown)

    def fired(self, code: str) -> B:
        """(M, P) cells where interval rule ``code`` fired."""
        return np.asarray((self.rule_bits & np.int32(1 << rule(code).bit)) != 0, dtype=bool)


def _bit(mask: B, code: str) -> I32:
    return np.where(mask, np.int32(1 << rule(code).bit), np.int32(0)).astype(np.int32)


def _day_index(local_s: I64) -> tuple[I64, I64]:
    """(starts of each local day's column run, day id per column) for time-ordered columns."""
    day = local_s // 86400
    starts = np.flatnonzero(np.concatenate(([True], day[1:] != day[:-1])))
    return starts, day


def _history_daily(values: F64, valid: B, local_s: I64, step_s: int, upto: int) -> tuple[F64, I64]:
    """(mean daily usage over the complete local days of columns [:upto], NaN where none; number of those days)."""
    m = values.shape[0]
    if upto == 0:
        return np.full(m, np.nan), np.zeros(m, dtype=np.int64)
    starts, _ = _day_index(local_s[:upto])
    x = np.where(valid[:, :upto], values[:, :upto], 0.0)
    sums = np.add.reduceat(x, starts, axis=1)
    got = np.add.reduceat(valid[:, :upto].astype(np.int64), starts, axis=1)
    width = np.diff(np.append(starts, upto))
    complete = (got == width[None, :]) & (width[None, :] * step_s >= 23 * 3600)
    n = complete.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.where(complete, sums, 0.0).sum(axis=1) / n, np.nan), n.astype(np.int64)


def _spikes(values: F64, valid: B, cfg: VeeConfig) -> B:
    """Cells far above the mean of their valid neighbours (no NaN arithmetic: sums and counts of valid cells)."""
    m, t = values.shape
    if cfg.spike_factor > 0 and cfg.spike_floor_wh >= 0:
        # the limit is never below factor x floor, so only cells above that can be spikes: judge those alone (the
        # same arithmetic as the dense form below, on a few cells instead of the whole matrix)
        rows, cols = np.nonzero(valid & (values > cfg.spike_factor * cfg.spike_floor_wh))
    else:
        rows, cols = np.nonzero(valid)
    total = np.zeros(len(rows))
    count = np.zeros(len(rows))
    for side, inside in ((cols - 1, cols > 0), (cols + 1, cols < t - 1)):
        r, c = rows[inside], side[inside]
        ok = valid[r, c]
        total[inside] += np.where(ok, values[r, c], 0.0)
        count[inside] += ok
    ref = total / np.maximum(count, 1.0)
    limit = cfg.spike_factor * np.maximum(ref, cfg.spike_floor_wh)
    hit = (count > 0) & (values[rows, cols] > limit)
    out = np.zeros((m, t), dtype=bool)
    out[rows[hit], cols[hit]] = True
    return out


def _daily_rules(inp: VeeInput, valid: B, avg: F64, cfg: VeeConfig) -> tuple[B, B]:
    p0 = inp.period_from
    x = np.where(valid[:, p0:], inp.values[:, p0:], 0.0)
    starts, _ = _day_index(inp.local_s[p0:])
    width = np.diff(np.append(starts, x.shape[1]))
    sums = np.add.reduceat(x, starts, axis=1) if x.shape[1] else np.zeros((x.shape[0], 0))
    got = np.add.reduceat(valid[:, p0:].astype(np.int64), starts, axis=1) if x.shape[1] else sums.astype(np.int64)
    outage = inp.outage[:, p0:] if inp.outage is not None else np.zeros(x.shape, dtype=bool)
    out_any = np.add.reduceat(outage.astype(np.int64), starts, axis=1) > 0 if x.shape[1] else got > 0
    ok = (avg >= cfg.min_daily_wh)[:, None]
    high = ok & (sums > cfg.high_factor * avg[:, None])
    low = ok & (got == width[None, :]) & ~out_any & (sums < cfg.low_factor * avg[:, None])
    return np.repeat(high, width, axis=1), np.repeat(low, width, axis=1)


def _repeated_days(inp: VeeInput, valid: B) -> B:
    """Cells of a local day whose complete, non-constant profile repeats the previous day's exactly."""
    p0 = inp.period_from
    starts, _ = _day_index(inp.local_s)
    width = np.diff(np.append(starts, inp.values.shape[1]))
    out = np.zeros(inp.values.shape, dtype=bool)
    for d in np.flatnonzero((width[1:] == width[:-1]) & (starts[1:] >= p0)) + 1:  # one step per day, not per meter
        a, b = starts[d - 1], starts[d]
        w = int(width[d])
        prev, cur = inp.values[:, a : a + w], inp.values[:, b : b + w]
        complete = valid[:, a : a + w].all(axis=1) & valid[:, b : b + w].all(axis=1)
        varied = np.ptp(cur, axis=1) > 0 if w else np.zeros(len(cur), dtype=bool)
        out[:, b : b + w] |= (complete & varied & np.all(prev == cur, axis=1))[:, None]
    return out[:, p0:]


def _ratio_near(ratio: F64, factor: F64 | float, tol: float) -> B:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.isfinite(ratio) & (np.abs(ratio / factor - 1.0) <= tol)


def _meter_rules(inp: VeeInput, valid: B, cfg: VeeConfig) -> dict[str, B]:
    m, _ = inp.shape
    p0 = inp.period_from
    delta = inp.register_delta_wh if inp.register_delta_wh is not None else np.full(m, np.nan)
    mult = inp.multiplier if inp.multiplier is not None else np.ones(m)
    period = inp.values[:, p0:]
    pvalid = valid[:, p0:]
    complete = pvalid.all(axis=1)
    actual = np.where(pvalid, period, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where((delta > 0) & complete, actual / delta, np.nan)
    multiplier = (np.abs(mult - 1.0) > cfg.ratio_tol) & (
        _ratio_near(ratio, mult, cfg.ratio_tol) | _ratio_near(ratio, 1.0 / mult, cfg.ratio_tol)
    )
    unit = _ratio_near(ratio, 1000.0, cfg.ratio_tol) | _ratio_near(ratio, 0.001, cfg.ratio_tol)
    # without a register: the period's typical interval 1000x the history's (a Wh/kWh switch)
    enough = valid[:, :p0].sum(axis=1) >= cfg.min_history_intervals
    if enough.any():
        hist = np.where(valid[:, :p0] & (inp.values[:, :p0] > 0), inp.values[:, :p0], np.nan)
        now = np.where(pvalid & (period > 0), period, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"), _quiet():
            r = np.nanmedian(now[enough], axis=1) / np.nanmedian(hist[enough], axis=1)
        unit[enough] |= _ratio_near(r, 1000.0, 0.5) | _ratio_near(r, 0.001, 0.5)
    return {"multiplier": multiplier, "unit": unit}


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence numpy's all-NaN slice warnings (an all-missing meter is data, not a bug)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def validate(inp: VeeInput, cfg: VeeConfig | None = None) -> Validation:
    """Run every validation rule over the period columns (the sum check runs after estimation, in run_vee)."""
    cfg = cfg or VeeConfig()
    m, t = inp.shape
    p0 = inp.period_from
    values = inp.values
    present = ~np.isnan(values)
    valid = present & (values >= 0)
    bits = _bit(~present[:, p0:], "missing") | _bit(present[:, p0:] & (values[:, p0:] < 0), "negative")
    spikes = _spikes(values, valid, cfg)
    bits |= _bit(spikes[:, p0:], "spike_neighbours")
    good = valid & ~spikes
    enough = good[:, :p0].sum(axis=1) >= cfg.min_history_intervals  # per meter: history to judge against
    if enough.any():
        p99 = np.full(m, np.nan)
        with _quiet():
            p99[enough] = np.nanpercentile(np.where(good[enough, :p0], values[enough, :p0], np.nan), 99, axis=1)
        limit = np.where(enough, cfg.spike_history_factor * np.fmax(p99, 1.0), np.inf)
        bits |= _bit(good[:, p0:] & (values[:, p0:] > limit[:, None]), "spike_history")
    avg, days = _history_daily(values, good, inp.local_s, inp.step_s, p0)
    own, _ = _history_daily(values[:, p0:], good[:, p0:], inp.local_s[p0:], inp.step_s, t - p0)
    # too little history: the period's own complete days are the reference
    avg = np.where(days * 86400 >= cfg.min_history_intervals * inp.step_s, avg, own)
    high, low = _daily_rules(inp, good, avg, cfg)
    bits |= _bit(high, "high_usage") | _bit(low, "low_usage")
    outage = inp.outage[:, p0:] if inp.outage is not None else np.zeros((m, t - p0), dtype=bool)
    zero = present[:, p0:] & (values[:, p0:] == 0) & ~outage
    bits |= _bit(run_lengths(zero) * inp.step_s >= cfg.zero_run_s, "zero_consumption")
    dup = _repeated_days(inp, valid)
    q = inp.quality[:, p0:] if inp.quality is not None else None
    if q is not None:
        dup |= (q & np.int32(QualityFlag.DUPLICATE_SOURCE)) != 0
    bits |= _bit(dup, "duplicate")
    skew = (q & np.int32(QualityFlag.CLOCK_SKEW)) != 0 if q is not None else np.zeros((m, t - p0), dtype=bool)
    if inp.clock_offset_s is not None:
        skew = skew | (np.abs(np.nan_to_num(inp.clock_offset_s)) > cfg.clock_tolerance_s)[:, None]
    bits |= _bit(skew & present[:, p0:], "clock_drift")
    return Validation(bits, _meter_rules(inp, valid, cfg), avg)
