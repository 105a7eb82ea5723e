"""Billing completeness against bills computed by hand (SAM cannot express these; test_sam_peer.py has the rest):
tier bounds that differ between the TOU periods of one month, ratchet percents by calendar month, a tariff change
inside a period (split, labelled, prorated), and its combination with move-in and move-out.

April 2024 in UTC: 30 days from a Monday, 22 weekdays; at 100 Wh per quarter hour a day holds 9.6 kWh, the month
288 kWh, of which the weekday 16-21 window holds 22 x 5 h x 0.4 kWh = 44 kWh.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pytest

from amiflow.errors import RatingError
from rating.bill import bill_json
from rating.offline import Usage, rate_usage
from rating.tariff import TariffSpec
from rating.tariff_change import rate_parts, split_bill_json, tariff_parts

from .conftest import BASE, axis_ts, lines, rate, tariff

TOU = {"default": "off", "rules": ["peak: weekdays 16-21"]}
APRIL = (date(2024, 4, 1), date(2024, 5, 1))


def test_tier_bounds_of_their_own_per_tou_period() -> None:
    energy = {"rates": {"off": ["0.10", "0.20"], "peak": ["0.30", "0.50"]},
              "tier_limits_kwh_by_period": {"off": ["200"], "peak": ["20"]}}  # fmt: skip
    t = tariff(tou=TOU, energy=energy)
    # each period fills its own blocks: off 200 + 44 kWh, peak 20 + 24 kWh
    assert lines(rate(t, *APRIL, 100.0)) == {
        "energy.off.t1": (200_000, 2000), "energy.off.t2": (44_000, 880),
        "energy.peak.t1": (20_000, 600), "energy.peak.t2": (24_000, 1200),
    }  # fmt: skip
    # move-out after the 15th: bounds x 15/30 -> off 100, peak 10; 11 weekdays -> peak 22 kWh, off 144 - 22 = 122
    half = rate(t, *APRIL, 100.0, active_to=[date(2024, 4, 16)])
    assert lines(half) == {
        "energy.off.t1": (100_000, 1000), "energy.off.t2": (22_000, 440),
        "energy.peak.t1": (10_000, 300), "energy.peak.t2": (12_000, 600),
    }  # fmt: skip


def test_equal_bounds_per_period_are_the_shared_bounds() -> None:
    shared = tariff(tou=TOU, energy={"rates": {"off": ["0.1", "0.2"], "peak": ["0.3", "0.4"]},
                                     "tier_limits_kwh": ["200"]})  # fmt: skip
    same = tariff(tou=TOU, energy={"rates": {"off": ["0.1", "0.2"], "peak": ["0.3", "0.4"]},
                                   "tier_limits_kwh_by_period": {"off": ["200"], "peak": ["200"]}})  # fmt: skip
    assert lines(rate(shared, *APRIL, 100.0)) == lines(rate(same, *APRIL, 100.0))  # pro rata of the total


def test_a_period_with_fewer_blocks_and_a_season_without_tiers() -> None:
    # the summer period has no tiers; in April only "off" (two blocks) occurs: its bounds rule the month
    energy = {"rates": {"off": ["0.10", "0.20"], "summer": "0.50"}, "tier_limits_kwh_by_period": {"off": ["250"]}}
    t = tariff(tou={"default": "off", "rules": ["summer: all all Jun-Sep"]}, energy=energy)
    assert lines(rate(t, *APRIL, 100.0)) == {
        "energy.off.t1": (250_000, 2500), "energy.off.t2": (38_000, 760),
        "energy.summer.t1": (0, 0), "energy.summer.t2": (0, 0),
    }  # fmt: skip
    june = rate(t, date(2024, 6, 1), date(2024, 7, 1), 100.0)
    assert lines(june)["energy.summer.t1"] == (288_000, 14_400) and lines(june)["energy.summer.t2"] == (0, 0)


def test_ratchet_percents_by_calendar_month_of_the_earlier_peak() -> None:
    pct = ["50", "90", "50"] + ["0"] * 9  # January 50 %, February 90 %, March 50 %
    t = tariff(demand=[{"code": "dem", "rates": {"all": "10.00"}, "ratchet_pct_by_month": pct, "ratchet_months": 3}])
    prior = np.array([[10_000.0, 5_000.0, 9_000.0]])  # W of January, February, March (most recent last)
    # April: max(50 % x 10, 90 % x 5, 50 % x 9) = 5 kW > 0.4 kW
    assert lines(rate(t, *APRIL, 100.0, prior_peak_w={"dem": prior}))["dem.all"] == (5000, 5000)
    t2 = tariff(demand=[{"code": "dem", "rates": {"all": "10.00"}, "ratchet_pct_by_month": pct, "ratchet_months": 2}])
    assert lines(rate(t2, *APRIL, 100.0, prior_peak_w={"dem": prior}))["dem.all"] == (4500, 4500)  # Feb, Mar only


def test_a_ratchet_needs_a_monthly_peak() -> None:
    with pytest.raises(ValueError, match="monthly peak only"):
        TariffSpec.model_validate({**BASE, "demand": [{"rates": {"peak": "1"}, "tou": TOU, "ratchet_pct": 80}]})
    with pytest.raises(ValueError, match="not both"):
        TariffSpec.model_validate({**BASE, "demand": [{"rates": {"all": "1"}, "ratchet_pct": 80,
                                                       "ratchet_pct_by_month": ["80"] * 12}]})  # fmt: skip


def _versions(**v2: Any) -> list[TariffSpec]:
    v1 = {**BASE, "version": 1, "energy": {"rates": {"off": "0.10"}}, "fixed": [{"code": "cust", "amount": "10.00"}],
          "demand": [{"code": "dem", "rates": {"all": "10.00"}}]}  # fmt: skip
    new = {
        **v1,
        "version": 2,
        "effective_from": "2024-04-16",
        "energy": {"rates": {"off": "0.20"}},
        "fixed": [{"code": "cust", "amount": "16.00"}],
        "demand": [{"code": "dem", "rates": {"all": "12.00"}}],
    }
    return [TariffSpec.model_validate(v1), TariffSpec.model_validate({**new, **v2})]


def _usage() -> tuple[np.ndarray, np.ndarray]:
    ts = axis_ts(*APRIL)
    x = np.full((2, len(ts)), 100.0)
    x[:, 96 + 8] = 500.0  # 2 kW for a quarter hour on April 2nd
    return ts, x


def test_tariff_change_inside_the_period_splits_it() -> None:
    parts = tariff_parts(_versions(), *APRIL)
    assert [(p.tariff.spec.version, p.start, p.end) for p in parts] == [
        (1, date(2024, 4, 1), date(2024, 4, 16)), (2, date(2024, 4, 16), date(2024, 5, 1))
    ]  # fmt: skip
    ts, x = _usage()
    blocks = rate_parts(parts, ts, x[:1], tz="UTC", period_start=APRIL[0], period_end=APRIL[1])
    bill = split_bill_json(blocks, 0, meter="m1", account="A1")
    # part 1 (15 days, v1): 144.4 kWh x 0.10 = 14.44; 10.00 x 15/30 = 5.00; 2 kW x 10.00 x 15/30 = 10.00
    # part 2 (15 days, v2): 144 kWh x 0.20 = 28.80; 16.00 x 15/30 = 8.00; 0.4 kW x 12.00 x 15/30 = 2.40
    got = [(li["code"], li["quantity"], li["amount"], li["part"]) for li in bill["lines"]]
    assert got == [
        ("energy.off", "144.400", "14.44", 0), ("dem.all", "2.000", "10.00", 0), ("cust", "0.500", "5.00", 0),
        ("energy.off", "144.000", "28.80", 1), ("dem.all", "0.400", "2.40", 1), ("cust", "0.500", "8.00", 1),
    ]  # fmt: skip
    assert bill["lines"][0]["description"] == "Energy (off) [2024-04-01..2024-04-15, t v1]"
    assert bill["total"] == "68.64" and bill["tariff"] == {"id": "t", "version": 2}
    assert bill["bill_id"] == "A1:2024-04-01:2024-04-30"
    assert bill["period"] == {"start": "2024-04-01", "end": "2024-04-30", "start_utc": "2024-04-01T00:00:00Z",
                              "end_utc": "2024-05-01T00:00:00Z"}  # fmt: skip
    det = bill["determinants"]
    assert det["days"] == 30 and det["import_kwh"] == "288.400" and det["peak_kw"]["dem"]["all"] == "2.000"
    assert [(p["start"], p["end"], p["tariff"]["version"], p["days"], p["total"]) for p in bill["parts"]] == [
        ("2024-04-01", "2024-04-15", 1, 15, "29.44"), ("2024-04-16", "2024-04-30", 2, 15, "39.20")
    ]  # fmt: skip
    assert set(bill) >= {"bill_id", "version", "account", "meters", "period", "tariff", "determinants", "lines",
                         "total", "currency", "estimated_share", "vee"}  # fmt: skip


def test_tariff_change_with_move_in_and_move_out() -> None:
    ts, x = _usage()
    blocks = rate_parts(
        tariff_parts(_versions(), *APRIL), ts, x, tz="UTC", period_start=APRIL[0], period_end=APRIL[1],
        active_from=np.array(["2024-04-11", "NaT"], dtype="datetime64[D]"),
        active_to=np.array(["NaT", "2024-04-11"], dtype="datetime64[D]"),
    )  # fmt: skip
    moved_in = split_bill_json(blocks, 0, meter="m1")
    # part 1 (Apr 11-15, 5 of 20 active days): 48 kWh x 0.10 = 4.80; 10.00 x 5/30 = 1.67; 0.4 kW x 10 x 5/20 = 1.00
    # part 2 (15 of 20): 144 kWh x 0.20 = 28.80; 16.00 x 15/30 = 8.00; 0.4 kW x 12.00 x 15/20 = 3.60
    assert [li["amount"] for li in moved_in["lines"]] == ["4.80", "1.00", "1.67", "28.80", "3.60", "8.00"]
    assert moved_in["total"] == "47.87" and moved_in["period"]["start"] == "2024-04-11"
    moved_out = split_bill_json(blocks, 1, meter="m2")  # Apr 1-10: only v1 -> a plain bill, no parts
    assert "parts" not in moved_out and moved_out["tariff"]["version"] == 1
    # 96.4 kWh x 0.10 = 9.64; 10.00 x 10/30 = 3.33; 2 kW x 10.00 (all its active days: not prorated) = 20.00
    assert moved_out["total"] == "32.97" and moved_out["determinants"]["days"] == 10


def test_one_version_is_billed_exactly_as_before() -> None:
    ts, x = _usage()
    (v1, _) = _versions()
    parts = tariff_parts([v1], *APRIL)
    split = split_bill_json(rate_parts(parts, ts, x, tz="UTC", period_start=APRIL[0], period_end=APRIL[1]), 1,
                            meter="m2", account="A")  # fmt: skip
    whole = bill_json(rate(parts[0].tariff, *APRIL, x), 1, meter="m2", account="A")
    assert split == whole


def test_a_change_to_the_same_rates_adds_up_to_the_whole() -> None:
    flat = {"demand": [], "energy": {"rates": {"off": "0.1234"}}, "fixed": [{"code": "cust", "amount": "10.01"}]}
    v1, v2 = (TariffSpec.model_validate({**s.model_dump(), **flat}) for s in _versions())
    ts, x = _usage()
    split = split_bill_json(rate_parts(tariff_parts([v1, v2], *APRIL), ts, x, tz="UTC", period_start=APRIL[0],
                                       period_end=APRIL[1]), 0, meter="m")  # fmt: skip
    whole = bill_json(rate(tariff_parts([v1], *APRIL)[0].tariff, *APRIL, x), 0, meter="m")
    # each line within half a cent of its share: 2 energy + 2 fixed lines -> at most 2 cents apart
    assert abs(float(split["total"]) - float(whole["total"])) <= 0.02
    assert split["determinants"]["import_kwh"] == whole["determinants"]["import_kwh"]


def test_tariff_parts_pick_the_newest_version_each_day_and_name_a_gap() -> None:
    v1, v2 = _versions()
    assert len(tariff_parts([v1, v2], date(2024, 3, 1), date(2024, 4, 1))) == 1
    ended = TariffSpec.model_validate({**v1.model_dump(), "effective_to": "2024-04-10"})
    with pytest.raises(RatingError, match="effective on 2024-04-10"):
        tariff_parts([ended, v2], *APRIL)


def test_offline_rating_splits_a_month_with_a_tariff_change() -> None:
    ts, x = _usage()
    usage = Usage(ts, x[0], np.zeros(len(ts)), 900)
    (bill,) = rate_usage(_versions(), usage, "UTC", [APRIL[0]])
    assert bill["total"] == "68.64" and len(bill["parts"]) == 2
