"""amiflow's monthly bills against NREL SAM's (PySAM Utilityrate5) for every case SAM can express: TOU energy with
pro-rata tiers, monthly and daily tier bounds, tier bounds of their own per TOU period (seasonal, as URDB writes
them), fixed charges, flat and TOU demand with kW tiers, and ratchets over several months (a percent over a
look-back window, or percents by calendar month). Cases SAM cannot express (move-in/out proration, a tariff change
inside a period, bounds differing between periods of one month) are checked against hand-computed bills in
test_billing_completeness.py."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from rating.tariff import TariffSpec
from rating.urdb import urdb_to_specs

from .sam_peer import MONTHS, STEPS, assert_same_bills

PEAK = [[1 if 16 <= h < 21 else 0 for h in range(24)] for _ in range(12)]
OFF = [[0] * 24 for _ in range(12)]
SUMMER = [5, 6, 7, 8]  # 0-based Jun..Sep


def _load() -> np.ndarray:
    """A year of 15-minute kW: an evening hump, more in summer, noise, and a few demand spikes."""
    rng = np.random.default_rng(2018)
    q = np.arange(STEPS)
    hour = (q // 4) % 24
    day = q // 96
    summer = (day >= 151) & (day < 273)
    kw = 0.6 + 1.4 * ((hour >= 17) & (hour < 22)) + 0.8 * summer + rng.uniform(0.0, 0.5, STEPS)
    for day_of_year, kw_peak in ((45, 9.0), (190, 24.0), (200, 14.0), (250, 6.5), (330, 4.0)):
        kw[day_of_year * 96 + 14 * 4 + 1] = kw_peak  # one quarter hour at 14:15
    return np.round(kw, 4)


LOAD = _load()


def _spec(**over: Any) -> TariffSpec:
    base: dict[str, Any] = {
        "id": "sam", "effective_from": "2000-01-01",
        "tou": {"periods": ["off", "peak"], "weekday": PEAK, "weekend": OFF},
        "energy": {"rates": {"off": ["0.11", "0.17"], "peak": ["0.29", "0.37"]}, "tier_limits_kwh": ["900"]},
    }  # fmt: skip
    return TariffSpec.model_validate({**base, **over})


def test_calendar_is_sams() -> None:
    assert MONTHS[0].weekday() == 0 and (MONTHS[-1] - MONTHS[0]).days == 365


def test_tou_tiers_fixed_flat_and_tou_demand() -> None:
    spec = _spec(
        fixed=[{"code": "customer", "amount": "12.34"}],
        demand=[
            {"code": "flat", "rates": {"all": ["8.50", "11.25"]}, "tier_limits_kw": ["10"]},
            {"code": "tou", "rates": {"peak": "4.25", "off": "0"}, "tou": {"periods": ["off", "peak"],
             "weekday": PEAK, "weekend": OFF}},
        ],
    )  # fmt: skip
    ours = assert_same_bills(spec, LOAD)
    assert ours.flat_demand[6] == pytest.approx(10 * 8.5 + 14 * 11.25)  # July's 24 kW spike, both kW tiers


def test_daily_tier_bounds_times_the_days_of_the_month() -> None:
    spec = _spec(energy={"rates": {"off": ["0.10", "0.21"], "peak": ["0.30", "0.41"]}, "tier_limits_kwh": ["30"],
                         "tier_basis": "day"})  # fmt: skip
    assert_same_bills(spec, LOAD)


def test_seasonal_tier_bounds_per_period_from_urdb() -> None:
    # URDB writes a period's bounds on its own tiers: summer periods 0/1 [700], winter periods 2/3 [400, 1000]
    summer, winter = [0, 1], [2, 3]
    weekday = [[(summer if m in SUMMER else winter)[16 <= h < 21] for h in range(24)] for m in range(12)]
    weekend = [[(summer if m in SUMMER else winter)[0]] * 24 for m in range(12)]
    item = {
        "label": "seasonal-tiers", "startdate": 946684800,
        "energyratestructure": [
            [{"rate": 0.12, "max": 700}, {"rate": 0.19}], [{"rate": 0.31, "max": 700}, {"rate": 0.44}],
            [{"rate": 0.09, "max": 400}, {"rate": 0.13, "max": 1000}, {"rate": 0.2}],
            [{"rate": 0.25, "max": 400}, {"rate": 0.27, "max": 1000}, {"rate": 0.33}],
        ],
        "energyweekdayschedule": weekday, "energyweekendschedule": weekend, "fixedchargefirstmeter": 7.5,
    }  # fmt: skip
    (spec,) = urdb_to_specs(item)
    assert spec.energy.tier_limits_kwh_by_period["p2"] == [400, 1000]
    assert_same_bills(spec, LOAD)


@pytest.mark.parametrize(
    "ratchet",
    [
        {"demandratchetpercentage": [80] * 12},  # 80 % of the highest of the last 11 months
        {"lookbackPercent": 0.6, "lookbackRange": 3},  # 60 % of the highest of the last 3 months
        {"lookbackPercent": 0.75, "lookbackMonths": [m in SUMMER for m in range(12)]},  # summer peaks only
        {"demandratchetpercentage": [50] * 5 + [90] * 4 + [50] * 3},  # percents by calendar month of the peak
    ],
)
def test_ratchets_over_several_months_from_urdb(ratchet: dict[str, Any]) -> None:
    item = {
        "label": "ratchet", "startdate": 946684800,
        "energyratestructure": [[{"rate": 0.08}]], "energyweekdayschedule": OFF, "energyweekendschedule": OFF,
        "flatdemandstructure": [[{"rate": 9.5}]], "flatdemandmonths": [0] * 12, **ratchet,
    }  # fmt: skip
    (spec,) = urdb_to_specs(item)
    ours = assert_same_bills(spec, LOAD)
    assert ours.billing_kw[7] > 14.0  # August bills the July spike's ratchet, not its own peak


def test_ratchet_on_month_dependent_flat_demand_rates() -> None:
    item = {
        "label": "ratchet-seasonal", "startdate": 946684800,
        "energyratestructure": [[{"rate": 0.08}]], "energyweekdayschedule": OFF, "energyweekendschedule": OFF,
        "flatdemandstructure": [[{"rate": 6.0}], [{"rate": 13.0, "max": 15}, {"rate": 16.0}]],
        "flatdemandmonths": [1 if m in SUMMER else 0 for m in range(12)], "lookbackPercent": 80, "lookbackRange": 6,
    }  # fmt: skip
    (spec,) = urdb_to_specs(item)
    assert spec.demand[0].tou is not None and spec.demand[0].ratchet_pct == 80
    ours = assert_same_bills(spec, LOAD)
    assert ours.billing_kw[11] == pytest.approx(0.8 * 24.0, abs=0.001)  # December: 80 % of July (within 6 months)
