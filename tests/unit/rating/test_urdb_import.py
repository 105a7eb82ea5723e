"""URDB import: the real/real-shaped tariffs in tests/data/urdb rate to hand-computed bills; refusals name fields."""

from __future__ import annotations

import copy
import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from amiflow.errors import RatingError
from rating.compile import compile_tariff
from rating.tariff_files import load_tariff, tariff_from_data
from rating.time_axis import build_axis

from .conftest import axis_ts, lines, rate

DATA = Path(__file__).resolve().parents[2] / "data" / "urdb"
LA = "America/Los_Angeles"


def _item(name: str) -> dict[str, Any]:
    data = json.loads((DATA / name).read_text(), parse_float=Decimal)
    item: dict[str, Any] = data["items"][0] if "items" in data else data
    return item


def test_smud_ci_tod3_conversion_and_bill() -> None:
    (spec,) = load_tariff(DATA / "smud_ci_tod3_2025.json")
    assert spec.id == "68c0ca32d7afaa668b0dc6fb" and spec.source == "urdb"
    assert spec.effective_from == date(2025, 5, 1) and spec.effective_to is None
    t = compile_tariff(spec)
    # rate + adj (state surcharge 0.0003), exact
    assert [r[0] for r in t.energy_rate_text] == [
        Decimal(x) for x in ("0.1408", "0.1163", "0.0753", "0.2297", "0.1121")
    ]
    # July 2025 (summer): 100 Wh per quarter hour = 0.4 kW flat, one 2 kW quarter hour on Tue Jul 1 at 17:00
    july = (date(2025, 7, 1), date(2025, 8, 1))
    ts = axis_ts(*july, tz=LA)
    x = np.full((1, len(ts)), 100.0)
    x[0, 17 * 4] = 500.0
    b = rate(t, *july, x, tz=LA)
    got = lines(b)
    # weekdays in July 2025: 23 (Jul 4 is not a holiday here: URDB has no holiday calendar)
    # summer peak p3 = 23 days x 5 h (16-21) x 0.4 kWh = 46 kWh + 0.4 extra = 46.4 kWh x 0.2297 = 10.65808 -> 10.66
    assert got["energy.p3"] == (46_400, 1066)
    # off-peak p4: 31 x 24 x 0.4 = 297.6 - 46 = 251.6 kWh x 0.1121 = 28.20436 -> 28.20
    assert got["energy.p4"] == (251_600, 2820)
    # flat demand 2 kW x 5.539 = 11.078 -> 11.08; summer peak demand 2 kW x 11.609 = 23.218 -> 23.22
    assert got["demand.all"] == (2000, 1108)
    assert got["demand_tou.p1"] == (2000, 2322)
    assert got["fixed"] == (1000, 233_950)  # 2339.50 $/month
    assert int(b.total_minor[0]) == 1066 + 2820 + 1108 + 2322 + 233_950 + got["demand_tou.p0"][1]
    assert got["demand_tou.p0"] == (400, 0)  # off-peak demand period, rate 0


def test_pge_e1_daily_baseline_tiers() -> None:
    (spec,) = load_tariff(DATA / "pge_e1_region_y_2024.json")
    assert spec.effective_from == date(2024, 10, 1)
    t = compile_tariff(spec)
    assert t.tier_basis == "day" and t.tier_limits_wh.tolist() == [10_500.0]
    nov = (date(2024, 11, 1), date(2024, 12, 1))  # 30 days, with the fall-back day (100 quarter hours)
    b = rate(t, *nov, 125.0, tz=LA)
    # usage: (30 x 96 + 4) x 0.125 kWh = 360.5 kWh; baseline 10.5 x 30 = 315 kWh x 0.40206 = 126.6489 -> 126.65
    # above: 45.5 kWh x 0.50323 = 22.896965 -> 22.90
    assert lines(b) == {"energy.p0.t1": (315_000, 12665), "energy.p0.t2": (45_500, 2290)}
    assert int(b.total_minor[0]) == 14955


def test_etouc_like_net_metering_and_daily_charges() -> None:
    (spec,) = load_tariff(DATA / "etouc_like_illustrative.json")
    assert spec.effective_to == date(2025, 1, 1)
    t = compile_tariff(spec)
    assert t.export_mode == "net_metering" and [f.per for f in t.fixed] == ["day"]
    jan = (date(2024, 1, 1), date(2024, 2, 1))
    ts = axis_ts(*jan, tz=LA)
    axis = build_axis(t, ts, LA)
    peak = (axis.hour >= 16) & (axis.hour < 21)
    imp = np.full((1, len(ts)), 50.0)  # 4.8 kWh a day: under the 13.5 kWh/day baseline
    exp = np.where(peak, 125.0, 0.0)[None, :]  # 0.5 kWh/h exported 16-21 every day: 31 x 5 x 0.5 = 77.5 kWh
    got = lines(rate(t, *jan, imp, exp, tz=LA))
    # winter peak p2 (every day 16-21): 31 x 5 h x 0.2 kWh = 31 kWh x 0.38 = 11.78
    # winter off p3: 31 x 4.8 - 31 = 117.8 kWh x 0.35 = 41.23
    # net metering credit at the peak first-tier rate: 77.5 x 0.38 = -29.45
    # fixed 0.40 x 31 = 12.40; minimum 0.30 x 31 = 9.30 < charges -> 0
    assert got["energy.p2.t1"] == (31_000, 1178) and got["energy.p3.t1"] == (117_800, 4123)
    assert got["export.p2"] == (77_500, -2945)
    assert got["fixed"] == (31_000, 1240) and got["minimum"] == (31_000, 0)


def test_api_response_with_several_items() -> None:
    items = [_item("pge_e1_region_y_2024.json"), _item("smud_ci_tod3_2025.json")]
    specs = tariff_from_data({"items": items})
    assert [s.id for s in specs] == ["67575942fe4f0b50f5027994", "68c0ca32d7afaa668b0dc6fb"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"coincidentratestructure": [[{"rate": 3}]]}, "coincidentratestructure"),
        ({"fixedchargeunits": "$/year", "fixedchargefirstmeter": 100}, r"\$/year"),
        ({"demandwindow": 5, "flatdemandstructure": [[{"rate": 1}]]}, "demandwindow 5"),
        ({"demandunits": "kVA", "flatdemandstructure": [[{"rate": 1}]]}, "kVA"),
        ({"energyratestructure": [[{"rate": 0.1, "max": 5, "unit": "kWh/kW"}, {"rate": 0.2}]]}, "kWh/kW"),
        ({"flatdemandstructure": [[{"rate": 1, "max": 5}, {"rate": 2}], [{"rate": 1, "max": 6}, {"rate": 2}]],
          "flatdemandmonths": [0] * 6 + [1] * 6}, "different kW tier bounds"),
        ({"flatdemandstructure": [[{"rate": 1}]], "lookbackPercent": 0.8}, "lookbackRange 0"),
        ({"flatdemandstructure": [[{"rate": 1}]], "lookbackPercent": 0.8, "lookbackRange": 3,
          "lookbackMonths": [True] * 12}, "both set"),
        ({"flatdemandstructure": [[{"rate": 1}]], "demandratchetpercentage": [80] * 11}, "12 values"),
        ({"demandratchetpercentage": [80] * 12}, "needs a monthly peak"),
        ({"energyweekdayschedule": [[0] * 24] * 11}, "12 rows"),
        ({"energyweekdayschedule": [[7] * 24] * 12}, "outside"),
        ({"energyratestructure": []}, "no energyratestructure"),
    ],
)  # fmt: skip
def test_refusals_name_the_field(change: dict[str, Any], message: str) -> None:
    item = copy.deepcopy(_item("pge_e1_region_y_2024.json"))
    item.update(change)
    with pytest.raises(RatingError, match=message):
        compile_tariff(tariff_from_data(item)[0])
