"""Hypothesis properties of STYLE.md: lines sum to the total, zero usage leaves fixed charges only, more usage never
lowers an energy charge, and splitting a period (move-out + move-in) and re-rating agrees within the rounding rule.

The rounding rule: every line is within half a minor unit of its exact value (rate x quantity, quantity to 0.001),
so a whole and its two parts can differ by at most half a cent per line involved, plus the quantity rounding
(0.0005 kWh per line at the highest rate), plus what a percentage tax adds on those differences.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from .conftest import axis_ts, rate, tariff

TZ = "Europe/Berlin"
START, END = date(2024, 10, 21), date(2024, 11, 4)  # 14 days over the end of summer time (a 100-interval day)
N = len(axis_ts(START, END, TZ))

FULL = tariff(
    tou={"default": "off", "rules": ["peak: weekdays 8-20", "mid: weekends 10-16"]},
    holidays={"country": "DE", "subdivision": "BY"},
    energy={"rates": {"peak": ["0.31", "0.41"], "mid": ["0.22", "0.32"], "off": ["0.18", "0.28"]},
            "tier_limits_kwh": ["150"]},
    demand=[{"code": "dem", "rates": {"all": "4.20"}, "interval_min": 30},
            {"code": "pk", "rates": {"peak": "2.10"}, "tou": "energy"}],
    fixed=[{"code": "base", "amount": "8.95"}, {"code": "meter", "amount": "0.11", "per": "day"}],
    minimum={"amount": "25.00"},
    taxes=[{"code": "vat", "percent": "19", "applies_to": ["energy", "demand", "fixed", "minimum", "export"]}],
    export={"mode": "credit", "rate": "0.0811"},
    currency="EUR",
)  # fmt: skip
CHRONO = tariff(
    tou={"default": "off", "rules": ["peak: weekdays 8-20"]},
    energy={"rates": {"peak": ["0.31", "0.41"], "off": ["0.18", "0.28"]}, "tier_limits_kwh": ["100"],
            "allocation": "chronological"},
)  # fmt: skip
LINEAR = tariff(  # the parts of a tariff that are additive over days: TOU energy, fixed, export, tax
    tou={"default": "off", "rules": ["peak: weekdays 8-20"]},
    energy={"rates": {"peak": "0.3172", "off": "0.1893"}},
    fixed=[{"code": "base", "amount": "8.95"}, {"code": "meter", "amount": "0.11", "per": "day"}],
    taxes=[{"code": "vat", "percent": "19", "applies_to": ["energy", "fixed", "export"]}],
    export={"mode": "net_metering"},
)

usage = hnp.arrays(np.float64, (3, N), elements=st.floats(0, 2000, allow_nan=False, width=32))
fast = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _energy(block: object, row: int) -> int:
    cols = [i for i, s in enumerate(block.lines) if s.category == "energy"]  # type: ignore[attr-defined]
    return int(block.amount_minor[row, cols].sum())  # type: ignore[attr-defined]


@fast
@given(usage, usage)
def test_lines_sum_to_total(imp: np.ndarray, exp: np.ndarray) -> None:
    b = rate(FULL, START, END, imp, exp / 4, tz=TZ)
    assert (b.amount_minor.sum(axis=1) == b.total_minor).all()


@fast
@given(st.integers(1, 14))
def test_zero_usage_leaves_fixed_charges_only(days: int) -> None:
    b = rate(FULL, START, END, np.zeros((1, N)), tz=TZ, active_to=[START + timedelta(days=days)])
    cats = {s.code: s.category for s in b.lines}
    amounts = {s.code: int(b.amount_minor[0, i]) for i, s in enumerate(b.lines)}
    assert all(v == 0 for k, v in amounts.items() if cats[k] in ("energy", "demand", "export"))
    fixed = amounts["base"] + amounts["meter"]
    assert amounts["meter"] == 11 * days
    minimum = int((Decimal(2500 * days) / 14).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))  # 25.00 x days/14
    assert amounts["minimum"] == max(minimum - fixed, 0)
    assert int(b.total_minor[0]) == fixed + amounts["minimum"] + amounts["vat"]


@fast
@given(usage, hnp.arrays(np.float64, (3, N), elements=st.floats(0, 500, allow_nan=False, width=32)),
       st.integers(0, N - 1))  # fmt: skip
def test_more_usage_never_lowers_an_energy_charge(imp: np.ndarray, extra: np.ndarray, at: int) -> None:
    extra[:, at] += 1000.0  # at least 1 kWh more: more than the rounding drift of the lines
    for t in (FULL, CHRONO):
        less, more = rate(t, START, END, imp, tz=TZ), rate(t, START, END, imp + extra, tz=TZ)
        for row in range(3):
            assert _energy(more, row) >= _energy(less, row)


@fast
@given(usage, usage, st.integers(1, 13))
def test_split_period_agrees_within_the_rounding_rule(imp: np.ndarray, exp: np.ndarray, cut: int) -> None:
    split = START + timedelta(days=cut)
    whole = rate(LINEAR, START, END, imp, exp / 3, tz=TZ)
    first = rate(LINEAR, START, END, imp, exp / 3, tz=TZ, active_to=[split] * 3)
    second = rate(LINEAR, START, END, imp, exp / 3, tz=TZ, active_from=[split] * 3)
    n_lines = len(whole.lines) - 1  # the tax line is bounded separately below
    for row in range(3):
        diff = abs(int(first.total_minor[row]) + int(second.total_minor[row]) - int(whole.total_minor[row]))
        # 0.5 cent per untaxed line in 3 bills, qty rounding < 0.0005 kWh x 0.32 x 3 x 3 lines (< 0.5 cent),
        # and the tax: 19 % of the base differences plus 0.5 cent per tax line
        base_bound = 0.5 * n_lines * 3 + 0.5
        assert diff <= base_bound * 1.19 + 1.5
