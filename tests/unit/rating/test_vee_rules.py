"""VEE validation rules: each rule with a case that fires and one that must not."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from amiflow.types import QualityFlag
from rating.vee import RULES, VeeConfig, VeeInput, local_start_s, run_vee

DAY = 96
HIST_DAYS = 14
PERIOD_DAYS = 14
START = 1_704_067_200  # 2024-01-01T00:00Z, a Monday


def make(
    values: np.ndarray | None = None, tz: str = "UTC", hist_days: int = HIST_DAYS, **over: Any
) -> tuple[VeeInput, np.ndarray]:
    """One or more meters of a smooth daily profile (Wh per 15 min) with some noise; history then period."""
    t = (hist_days + PERIOD_DAYS) * DAY
    ts = START + 900 * np.arange(1, t + 1, dtype=np.int64)
    if values is None:
        rng = np.random.default_rng(0)
        slot = np.arange(t) % DAY
        values = (150 + 100 * np.sin(slot / DAY * 2 * np.pi) + rng.uniform(-20, 20, t))[None, :]
    values = np.array(values, dtype=np.float64)
    inp = VeeInput(ts=ts, values=values, period_from=hist_days * DAY, local_s=local_start_s(ts, 900, tz), **over)
    return inp, values


def P(day: int, k: int = 0) -> int:
    """Column of interval k of period day ``day``."""
    return HIST_DAYS * DAY + day * DAY + k


def counts(inp: VeeInput, cfg: VeeConfig | None = None) -> dict[str, int]:
    r = run_vee(inp, cfg)
    return {code: int(v[0]) for code, v in r.counts.items()}


def test_clean_data_fires_nothing() -> None:
    inp, _ = make()
    assert all(v == 0 for v in counts(inp).values())
    assert run_vee(inp).hold == (None,)


def test_rule_codes_and_bits_are_stable() -> None:
    assert [(r.code, r.bit) for r in RULES] == [
        ("missing", 0), ("negative", 1), ("spike_neighbours", 2), ("spike_history", 3), ("high_usage", 4),
        ("low_usage", 5), ("zero_consumption", 6), ("duplicate", 7), ("clock_drift", 8), ("sum_check", 9),
        ("multiplier", 10), ("unit", 11), ("no_data", 12),
    ]  # fmt: skip


def test_missing() -> None:
    _, v = make()
    v[0, P(2, 5)] = np.nan
    v[0, 3] = np.nan  # in the history: not the period's business
    assert counts(make(v)[0])["missing"] == 1


def test_negative_fires_zero_does_not() -> None:
    _, v = make()
    v[0, P(1, 10)] = -5.0
    v[0, P(1, 20)] = 0.0
    c = counts(make(v)[0])
    assert c["negative"] == 1


def test_spike_neighbours() -> None:
    _, v = make()
    v[0, P(3, 40)] = 5000.0
    assert counts(make(v)[0])["spike_neighbours"] == 1
    _, v = make()
    v[0, P(3, 39)] = 900.0
    v[0, P(3, 40)] = 1500.0  # a ramp: below 10x its neighbours
    assert counts(make(v)[0])["spike_neighbours"] == 0
    quiet = np.zeros((1, (HIST_DAYS + PERIOD_DAYS) * DAY))
    quiet[0, P(2, 7)] = 900.0  # neighbours at zero: under 10 x the 100 Wh floor
    assert counts(make(quiet)[0])["spike_neighbours"] == 0


def test_spike_history() -> None:
    _, v = make()
    v[0, P(4, 40) : P(4, 44)] = 2000.0  # an hour at 8 kW: consistent neighbours, far above the history's p99
    c = counts(make(v)[0])
    assert c["spike_history"] == 4 and c["spike_neighbours"] == 0
    _, v = make()
    v[0, P(4, 40) : P(4, 44)] = 600.0  # high but under 4 x p99 (~270 Wh)
    assert counts(make(v)[0])["spike_history"] == 0


def test_high_and_low_usage_against_the_average_day() -> None:
    _, v = make()
    v[0, P(5) : P(6)] *= 5
    c = counts(make(v)[0])
    assert c["high_usage"] == DAY and c["low_usage"] == 0
    _, v = make()
    v[0, P(5) : P(6)] *= 2  # twice the average: a busy day, not flagged
    assert counts(make(v)[0])["high_usage"] == 0
    _, v = make()
    v[0, P(6) : P(7)] *= 0.01
    assert counts(make(v)[0])["low_usage"] == DAY


def test_low_usage_not_flagged_on_an_outage_day() -> None:
    _, v = make()
    v[0, P(6) : P(7)] *= 0.01
    outage = np.zeros(v.shape, dtype=bool)
    outage[0, P(6, 10) : P(6, 20)] = True
    assert counts(make(v, outage=outage)[0])["low_usage"] == 0


def test_zero_consumption_outage_aware() -> None:
    _, v = make()
    v[0, P(7) : P(8)] = 0.0  # 24 h of zeros
    assert counts(make(v)[0])["zero_consumption"] == DAY
    outage = np.zeros(v.shape, dtype=bool)
    outage[0, P(7) - 2 : P(8) + 2] = True  # power_down .. power_up covers it
    r = run_vee(make(v, outage=outage)[0])
    assert int(r.counts["zero_consumption"][0]) == 0
    assert np.all(r.flags[0, DAY * 7 : DAY * 8] & QualityFlag.OUTAGE)
    _, v = make()
    v[0, P(7) : P(7, 24)] = 0.0  # 6 h of zeros: a meter may see that (away, all off)
    assert counts(make(v)[0])["zero_consumption"] == 0


def test_duplicate_repeated_day_and_duplicate_source() -> None:
    _, v = make()
    v[0, P(9) : P(10)] = v[0, P(8) : P(9)]
    assert counts(make(v)[0])["duplicate"] == DAY
    _, v = make()
    q = np.zeros(v.shape, dtype=np.int32)
    q[0, P(3, 3)] = QualityFlag.DUPLICATE_SOURCE
    assert counts(make(v, quality=q)[0])["duplicate"] == 1
    flat = np.full((1, (HIST_DAYS + PERIOD_DAYS) * DAY), 100.0)  # a constant load repeats itself legitimately
    assert counts(make(flat)[0])["duplicate"] == 0


def test_clock_drift() -> None:
    inp, v = make(clock_offset_s=np.array([120.0]))
    assert counts(inp)["clock_drift"] == PERIOD_DAYS * DAY
    assert counts(make(v, clock_offset_s=np.array([5.0]))[0])["clock_drift"] == 0
    q = np.zeros(v.shape, dtype=np.int32)
    q[0, P(2, 2)] = QualityFlag.CLOCK_SKEW
    r = run_vee(make(v, quality=q)[0])
    assert int(r.counts["clock_drift"][0]) == 1
    assert r.flags[0, DAY * 2 + 2] & QualityFlag.SUSPECT


def _period_sum(v: np.ndarray) -> float:
    return float(v[0, HIST_DAYS * DAY :].sum())


def test_sum_check_holds_the_bill() -> None:
    _, v = make()
    ok = make(v, register_delta_wh=np.array([_period_sum(v)]))[0]
    assert counts(ok)["sum_check"] == 0 and run_vee(ok).hold == (None,)
    bad = make(v, register_delta_wh=np.array([_period_sum(v) * 1.1]))[0]
    assert counts(bad)["sum_check"] == 1 and run_vee(bad).hold == ("sum_check",)
    assert run_vee(bad, VeeConfig(hold=())).hold == (None,)  # a utility may choose to bill anyway


def test_multiplier() -> None:
    _, v = make()
    delta = np.array([_period_sum(v) / 40])  # the intervals carry the CT ratio, the register does not
    inp = make(v, register_delta_wh=delta, multiplier=np.array([40.0]))[0]
    assert counts(inp)["multiplier"] == 1 and run_vee(inp).hold == ("multiplier",)
    fine = make(v, register_delta_wh=np.array([_period_sum(v)]), multiplier=np.array([40.0]))[0]
    assert counts(fine)["multiplier"] == 0


def test_unit_from_register_and_from_history() -> None:
    _, v = make()
    inp = make(v, register_delta_wh=np.array([_period_sum(v) / 1000]))[0]
    assert counts(inp)["unit"] == 1 and run_vee(inp).hold[0] == "unit"
    _, v = make()
    v[0, HIST_DAYS * DAY :] /= 1000  # kWh written as if Wh from the period on
    assert counts(make(v)[0])["unit"] == 1
    _, v = make()
    v[0, HIST_DAYS * DAY :] *= 1.5  # more usage, same unit
    assert counts(make(v)[0])["unit"] == 0


def test_no_data_holds() -> None:
    empty = np.full((1, (HIST_DAYS + PERIOD_DAYS) * DAY), np.nan)
    r = run_vee(make(empty)[0])
    assert r.hold == ("no_data",)


@pytest.mark.parametrize("m", [1, 5])
def test_rules_are_per_meter(m: int) -> None:
    _, v = make()
    many = np.repeat(v, m, axis=0)
    many[-1, P(3, 40)] = 5000.0
    r = run_vee(make(many)[0])
    assert r.counts["spike_neighbours"].tolist() == [0] * (m - 1) + [1]


def test_history_rules_stay_quiet_without_history() -> None:
    _, v = make()
    v[0, : HIST_DAYS * DAY] = np.nan  # a new meter: the history read is empty
    c = counts(make(v)[0])
    assert c["spike_history"] == 0 and c["unit"] == 0 and c["high_usage"] == 0 and c["low_usage"] == 0
    v[0, P(5) : P(6)] *= 10  # the period's own average (with this day in it) is the reference then
    assert counts(make(v)[0])["high_usage"] == DAY
