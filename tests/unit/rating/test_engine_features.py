"""Every tariff feature against a bill computed by hand (the arithmetic is in each test).

Usage is synthetic and regular so the arithmetic stays checkable: April 2024 in UTC has 30 days (2880 quarter
hours), starts on a Monday and has 22 weekdays; with 100 Wh per quarter hour a month holds 288 kWh, and the weekday
16-21 window holds 22 x 5 h x 0.4 kWh/h = 44 kWh.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from amiflow.errors import RatingError
from rating.time_axis import build_axis

from .conftest import axis_ts, lines, rate, tariff

TOU = {"default": "off", "rules": ["peak: weekdays 16-21"]}


def test_flat_energy_and_monthly_fixed(april: tuple[date, date]) -> None:
    t = tariff(energy={"rates": {"off": "0.12345"}}, fixed=[{"code": "cust", "amount": "10.00"}])
    b = rate(t, *april, 100.0)
    # 288 kWh x 0.12345 = 35.5536 -> 35.55; customer charge 10.00
    assert lines(b) == {"energy.off": (288_000, 3555), "cust": (1000, 1000)}
    assert int(b.total_minor[0]) == 4555
    assert int(b.days[0]) == 30


def test_tou_rule_weekday_peak(april: tuple[date, date]) -> None:
    t = tariff(tou=TOU, energy={"rates": {"peak": "0.30", "off": "0.10"}})
    b = rate(t, *april, 100.0)
    # peak 44 kWh x 0.30 = 13.20; off-peak 244 kWh x 0.10 = 24.40
    assert lines(b) == {"energy.off": (244_000, 2440), "energy.peak": (44_000, 1320)}
    assert int(b.total_minor[0]) == 3760


def test_interval_is_placed_by_its_start() -> None:
    # only the quarter hour ENDING 16:15 (starting 16:00) of Monday 2024-04-01 carries energy: it is peak
    t = tariff(tou=TOU, energy={"rates": {"peak": "1", "off": "0"}})
    ts = axis_ts(date(2024, 4, 1), date(2024, 4, 2))
    imp = np.zeros((2, len(ts)))
    imp[0, 16 * 4] = 1000.0  # ends 16:15 -> starts 16:00 -> peak
    imp[1, 16 * 4 - 1] = 1000.0  # ends 16:00 -> starts 15:45 -> off-peak
    b = rate(t, date(2024, 4, 1), date(2024, 4, 2), imp)
    assert lines(b, 0)["energy.peak"] == (1000, 100)
    assert lines(b, 1)["energy.peak"] == (0, 0)


def test_holidays_from_calendar_and_extra_dates() -> None:
    # May 2024: 31 days, 23 weekdays, Memorial Day (Mon 27th) is a US holiday -> 22 peak days, 400 Wh/h
    may = (date(2024, 5, 1), date(2024, 6, 1))
    rates = {"rates": {"peak": "0.40", "off": "0.10"}}
    t = tariff(tou=TOU, energy=rates, holidays={"country": "US"})
    b = rate(t, *may, 100.0)
    # peak 22 x 5 h x 0.4 = 44 kWh -> 17.60; off 297.6 - 44 = 253.6 kWh -> 25.36
    assert lines(b) == {"energy.off": (253_600, 2536), "energy.peak": (44_000, 1760)}
    t2 = tariff(tou=TOU, energy=rates, holidays={"country": "US", "extra": ["2024-05-10"]})
    assert lines(rate(t2, *may, 100.0))["energy.peak"] == (42_000, 1680)  # 21 days x 2 kWh
    t3 = tariff(tou=TOU, energy=rates)  # no calendar: Memorial Day is a weekday
    assert lines(rate(t3, *may, 100.0))["energy.peak"] == (46_000, 1840)


def test_holiday_schedule_of_its_own() -> None:
    # rules naming holidays give holidays their own schedule (weekends otherwise)
    tou = {"default": "off", "rules": ["peak: weekdays 16-21", "mid: holidays 16-21"]}
    t = tariff(tou=tou, energy={"rates": {"peak": "0.40", "mid": "0.20", "off": "0.10"}}, holidays={"country": "US"})
    b = rate(t, date(2024, 5, 1), date(2024, 6, 1), 100.0)
    assert lines(b)["energy.mid"] == (2000, 40)  # Memorial Day 16-21 = 5 h x 0.4 kWh


def test_seasons_and_month_ranges() -> None:
    tou = {"default": "off", "rules": ["peak: all 0-24 summer"]}
    t = tariff(tou=tou, seasons={"summer": ["Jun", "Jul"]}, energy={"rates": {"peak": "0.20", "off": "0.10"}})
    b = rate(t, date(2024, 5, 31), date(2024, 6, 2), 100.0)
    # May 31 off-peak 9.6 kWh, June 1 peak 9.6 kWh
    assert lines(b) == {"energy.off": (9600, 96), "energy.peak": (9600, 192)}


def test_urdb_style_matrices() -> None:
    wk = [[1 if 16 <= h < 21 else 0 for h in range(24)] for _ in range(12)]
    we = [[0] * 24 for _ in range(12)]
    t = tariff(tou={"periods": ["off", "peak"], "weekday": wk, "weekend": we},
               energy={"rates": {"peak": "0.30", "off": "0.10"}})  # fmt: skip
    assert lines(rate(t, date(2024, 4, 1), date(2024, 5, 1), 100.0))["energy.peak"] == (44_000, 1320)


TIERED = {"rates": {"peak": ["0.30", "0.40"], "off": ["0.10", "0.20"]}, "tier_limits_kwh": ["200"]}


def test_tiers_pro_rata(april: tuple[date, date]) -> None:
    t = tariff(tou=TOU, energy=TIERED)
    b = rate(t, *april, 100.0)
    # 288 kWh: block 1 = 200, block 2 = 88, split by period share (peak 44/288, off 244/288)
    # peak t1 200*44/288 = 30.5556 kWh -> 30.556 x 0.30 = 9.1668 -> 9.17
    # peak t2  88*44/288 = 13.4444 kWh -> 13.444 x 0.40 = 5.3776 -> 5.38
    # off t1 200*244/288 = 169.4444 kWh -> 169.444 x 0.10 = 16.9444 -> 16.94
    # off t2  88*244/288 = 74.5556 kWh -> 74.556 x 0.20 = 14.9112 -> 14.91
    assert lines(b) == {
        "energy.off.t1": (169_444, 1694), "energy.off.t2": (74_556, 1491),
        "energy.peak.t1": (30_556, 917), "energy.peak.t2": (13_444, 538),
    }  # fmt: skip
    assert int(b.total_minor[0]) == 4640


def test_tiers_chronological(april: tuple[date, date]) -> None:
    t = tariff(tou=TOU, energy={**TIERED, "allocation": "chronological"})
    b = rate(t, *april, 100.0)
    # block 1 fills after 2000 quarter hours = 500 h = Apr 1 00:00 .. Apr 21 20:00 (a Sunday): it holds the peak
    # hours of 15 weekdays (Apr 1-5, 8-12, 15-19) = 75 h x 0.4 = 30 kWh, and 170 kWh off-peak
    # peak t1 30 x 0.30 = 9.00; peak t2 14 x 0.40 = 5.60; off t1 170 x 0.10 = 17.00; off t2 74 x 0.20 = 14.80
    assert lines(b) == {
        "energy.off.t1": (170_000, 1700), "energy.off.t2": (74_000, 1480),
        "energy.peak.t1": (30_000, 900), "energy.peak.t2": (14_000, 560),
    }  # fmt: skip


def test_daily_tier_limits_scale_with_days(april: tuple[date, date]) -> None:
    t = tariff(energy={"rates": {"off": ["0.10", "0.20"]}, "tier_limits_kwh": ["5"], "tier_basis": "day"})
    b = rate(t, *april, 100.0)
    # 5 kWh/day x 30 days = 150 kWh at 0.10 = 15.00; 138 kWh at 0.20 = 27.60
    assert lines(b) == {"energy.off.t1": (150_000, 1500), "energy.off.t2": (138_000, 2760)}


def _spiky(n: int, at: int) -> np.ndarray:
    x = np.full((1, n), 100.0)
    x[0, at] = 500.0  # one quarter hour of 2 kW; the rest 0.4 kW
    return x


@pytest.mark.parametrize(("minutes", "kw"), [(15, 2000), (30, 1200), (60, 800)])
def test_monthly_demand_block_average(april: tuple[date, date], minutes: int, kw: int) -> None:
    # spike in the first quarter of an hour: 15 min 500 Wh -> 2.0 kW; 30 min (500+100)/0.5 h = 1.2 kW;
    # 60 min (500+300)/1 h = 0.8 kW; at $10.00/kW
    t = tariff(demand=[{"code": "dem", "rates": {"all": "10.00"}, "interval_min": minutes}])
    b = rate(t, *april, _spiky(2880, 8))  # interval ending 02:15 on Apr 1
    assert lines(b)["dem.all"] == (kw, kw)
    assert int(b.determinants["peak_kw.dem.all"][0]) == kw


def test_tou_demand_counts_only_its_period(april: tuple[date, date]) -> None:
    t = tariff(tou=TOU, energy={"rates": {"peak": "0.30", "off": "0.10"}},
               demand=[{"code": "dem", "rates": {"peak": "8.00"}, "tou": "energy"}])  # fmt: skip
    off_spike = rate(t, *april, _spiky(2880, 8))  # 02:00 is off-peak: peak-period demand stays 0.4 kW
    assert lines(off_spike)["dem.peak"] == (400, 320)
    peak_spike = rate(t, *april, _spiky(2880, 16 * 4))  # 16:00-16:15 Monday: 2 kW in the peak period
    assert lines(peak_spike)["dem.peak"] == (2000, 1600)
    assert int(peak_spike.determinants["peak_kw.dem.off"][0]) == 400


def test_demand_tiers_and_months(april: tuple[date, date]) -> None:
    # first 1 kW at 5.00, above at 7.00: 2 kW peak -> 5.00 + 7.00 = 12.00
    t = tariff(demand=[{"code": "dem", "rates": {"all": ["5.00", "7.00"]}, "tier_limits_kw": ["1"]}])
    got = lines(rate(t, *april, _spiky(2880, 8)))
    assert got == {"energy.off": (288_400, 2884), "dem.all.t1": (1000, 500), "dem.all.t2": (1000, 700)}
    summer_only = tariff(demand=[{"code": "dem", "rates": {"all": "10"}, "months": [6, 7, 8, 9]}])
    assert lines(rate(summer_only, *april, _spiky(2880, 8)))["dem.all"] == (0, 0)


def test_ratchet_on_prior_peaks(april: tuple[date, date]) -> None:
    spec = {"code": "dem", "rates": {"all": "10.00"}, "ratchet_pct": "80", "ratchet_months": 2}
    t = tariff(demand=[spec])
    x = _spiky(2880, 8)  # this month's peak 2 kW
    prior = np.array([[9000.0, 5000.0, 3000.0]])  # W, most recent last; only the last 2 months count
    b = rate(t, *april, x, prior_peak_w={"dem": prior})
    # 80 % of max(5000, 3000) W = 4 kW > 2 kW -> 4 kW x 10.00 = 40.00
    assert lines(b)["dem.all"] == (4000, 4000)
    assert int(b.determinants["peak_kw.dem.all"][0]) == 2000
    assert int(b.determinants["billed_kw.dem.all"][0]) == 4000
    low = rate(t, *april, x, prior_peak_w={"dem": np.array([[1000.0, np.nan]])})  # 0.8 kW < 2 kW
    assert lines(low)["dem.all"] == (2000, 2000)
    assert lines(rate(t, *april, x))["dem.all"] == (2000, 2000)  # no history: no ratchet


def test_daily_fixed_and_partial_period_proration(april: tuple[date, date]) -> None:
    fixed = [{"code": "month", "amount": "10.00"}, {"code": "daily", "amount": "0.39", "per": "day"}]
    t = tariff(fixed=fixed)
    whole = lines(rate(t, *april, 0.0))
    assert whole["daily"] == (30_000, 1170) and whole["month"] == (1000, 1000)  # 0.39 x 30 = 11.70
    # move-in on the 16th: 15 of 30 days -> 10.00 x 15/30 = 5.00; 0.39 x 15 = 5.85; energy only from the 16th
    x = np.full((2, 2880), 100.0)
    b = rate(t, *april, x, active_from=np.array(["2024-04-01", "2024-04-16"], dtype="datetime64[D]"))
    assert lines(b, 1) == {"energy.off": (144_000, 1440), "month": (500, 500), "daily": (15_000, 585)}
    assert int(b.days[1]) == 15 and int(b.days[0]) == 30
    # move-out after the 10th: 10.00 x 10/30 = 3.333 -> 3.33
    out = rate(t, *april, 0.0, active_to=np.array(["2024-04-11"], dtype="datetime64[D]"))
    assert lines(out)["month"] == (333, 333)


def test_intervals_outside_the_active_days_are_ignored(april: tuple[date, date]) -> None:
    x = np.full((1, 2880), np.nan)
    x[0, 15 * 96 :] = 100.0  # NaN before the move-in day is not an error
    b = rate(tariff(), *april, x, active_from=[date(2024, 4, 16)])
    assert lines(b)["energy.off"] == (144_000, 1440)


def test_minimum_charge_counts_fixed_and_prorates(april: tuple[date, date]) -> None:
    t = tariff(fixed=[{"code": "cust", "amount": "5.00"}], minimum={"amount": "20.00"})
    b = rate(t, *april, 1.0)
    # 2.88 kWh x 0.10 = 0.288 -> 0.29; + 5.00 = 5.29 < 20.00 -> adjustment 14.71
    assert lines(b) == {"energy.off": (2880, 29), "cust": (1000, 500), "minimum": (1000, 1471)}
    assert int(b.total_minor[0]) == 2000
    part = rate(t, *april, 1.0, active_to=[date(2024, 4, 11)])
    # 10 days: minimum 20 x 10/30 = 6.67; fixed 1.67; energy 0.96 kWh -> 0.10 (0.096); adj 6.67-1.77 = 4.90
    assert lines(part) == {"energy.off": (960, 10), "cust": (333, 167), "minimum": (333, 490)}
    assert lines(rate(t, *april, 1000.0))["minimum"][1] == 0  # above the minimum: no adjustment


def test_daily_minimum(april: tuple[date, date]) -> None:
    t = tariff(minimum={"amount": "0.30", "per": "day"})
    assert lines(rate(t, *april, 0.0))["minimum"] == (30_000, 900)  # 0.30 x 30


def test_taxes_on_chosen_lines_round_half_even(april: tuple[date, date]) -> None:
    taxes = [{"code": "vat", "percent": "5", "applies_to": ["energy", "fixed"]},
             {"code": "fee", "percent": "1.5", "applies_to": ["cust"]}]  # fmt: skip
    t = tariff(energy={"rates": {"off": "0.12345"}}, fixed=[{"code": "cust", "amount": "10.00"}], taxes=taxes)
    got = lines(rate(t, *april, 100.0))
    # base 35.55 + 10.00 = 45.55 x 5 % = 2.2775 -> 2.28; 1.5 % of 10.00 = 0.15
    assert got["vat"] == (45_550, 228) and got["fee"] == (10_000, 15)
    # a tie: 5 % of 10.10 = 0.505 -> 0.50 (half to even), 5 % of 10.30 = 0.515 -> 0.52
    t2 = tariff(energy={"rates": {"off": "0"}}, fixed=[{"code": "cust", "amount": "10.10"}], taxes=taxes[:1])
    assert lines(rate(t2, *april, 0.0))["vat"][1] == 50
    t3 = tariff(energy={"rates": {"off": "0"}}, fixed=[{"code": "cust", "amount": "10.30"}], taxes=taxes[:1])
    assert lines(rate(t3, *april, 0.0))["vat"][1] == 52


def test_energy_line_rounds_half_even() -> None:
    # 1 kWh x 0.125 = 0.125 -> 0.12; 3 kWh x 0.125 = 0.375 -> 0.38
    t = tariff(energy={"rates": {"off": "0.125"}})
    day = (date(2024, 4, 1), date(2024, 4, 2))
    x = np.zeros((2, 96))
    x[0, 0], x[1, 0] = 1000.0, 3000.0
    b = rate(t, *day, x)
    assert [int(v) for v in b.total_minor] == [12, 38]


def test_export_net_metering_and_credit(april: tuple[date, date]) -> None:
    ts = axis_ts(*april)
    axis = build_axis(tariff(tou=TOU, energy={"rates": {"peak": "0.30", "off": "0.10"}}), ts, "UTC")
    peak = (axis.hour >= 16) & (axis.hour < 21) & (axis.day_type == 0)
    exp = np.where(peak, 50.0, 0.0)[None, :]  # 22 kWh exported in peak hours
    nem = tariff(tou=TOU, energy={"rates": {"peak": ["0.30", "0.50"], "off": "0.10"}, "tier_limits_kwh": ["999"]},
                 export={"mode": "net_metering"})  # fmt: skip
    # credited at the first-tier import rate of the period: 22 x 0.30 = -6.60
    assert lines(rate(nem, *april, 100.0, exp))["export.peak"] == (22_000, -660)
    credit = tariff(
        tou=TOU, energy={"rates": {"peak": "0.30", "off": "0.10"}}, export={"mode": "credit", "rate": "0.05"}
    )
    b = rate(credit, *april, 100.0, exp)
    assert lines(b)["export.peak"] == (22_000, -110)  # 22 x 0.05
    assert int(b.determinants["export_kwh"][0]) == 22_000
    none = rate(tariff(tou=TOU, energy={"rates": {"peak": "0.30", "off": "0.10"}}), *april, 100.0, exp)
    assert "export.peak" not in lines(none) and int(none.determinants["export_kwh"][0]) == 22_000


def test_missing_and_negative_values(april: tuple[date, date]) -> None:
    x = np.full((1, 2880), 100.0)
    x[0, 5] = np.nan
    with pytest.raises(RatingError, match="1 missing"):
        rate(tariff(), *april, x)
    b = rate(tariff(), *april, x, nan="zero")
    assert lines(b)["energy.off"] == (287_900, 2879) and int(b.determinants["missing_intervals"][0]) == 1
    x[0, 5] = -1.0
    with pytest.raises(RatingError, match="negative"):
        rate(tariff(), *april, x)


def test_period_must_be_covered_and_effective(april: tuple[date, date]) -> None:
    t = tariff()
    ts = axis_ts(date(2024, 4, 1), date(2024, 4, 30))  # one day short
    from rating.engine import rate_block

    with pytest.raises(RatingError, match="covers 2784 of the 2880"):
        rate_block(t, ts, np.zeros((1, len(ts))), tz="UTC", period_start=april[0], period_end=april[1])
    old = tariff(effective_from="2020-01-01", effective_to="2024-04-15")
    with pytest.raises(RatingError, match="not effective"):
        rate(old, *april, 0.0)


def test_huge_amounts_stay_exact_and_empty_blocks_work(april: tuple[date, date]) -> None:
    t = tariff(energy={"rates": {"off": "0.123456789012"}}, taxes=[{"code": "tx", "percent": "10"}])
    b = rate(t, *april, np.full((1, 2880), 5e6))
    # 14,400,000 kWh x 0.123456789012 = 1,777,777.761773 -> 1,777,777.76; 10 % -> 177,777.776 -> 177,777.78
    assert b.amount_minor.dtype == object  # int64 could overflow at this rate scale: exact Python ints
    assert lines(b) == {"energy.off": (14_400_000_000, 177_777_776), "tx": (1_777_777_760, 17_777_778)}
    empty = rate(t, *april, np.zeros((0, 2880)))
    assert empty.amount_minor.shape == (0, 2) and empty.total_minor.shape == (0,)


def test_bill_json_of_a_partial_period(april: tuple[date, date]) -> None:
    from rating.bill import bills_json

    t = tariff(fixed=[{"code": "cust", "amount": "10.00"}])
    b = rate(t, *april, np.full((2, 2880), 100.0), tz="UTC", active_from=[None, date(2024, 4, 16)])
    full, moved_in = bills_json(b, ["m1", "m2"], accounts=["A1", None], estimated_share=[0.0, 0.25])
    assert full["period"] == {"start": "2024-04-01", "end": "2024-04-30", "start_utc": "2024-04-01T00:00:00Z",
                              "end_utc": "2024-05-01T00:00:00Z"}  # fmt: skip
    assert full["bill_id"] == "A1:2024-04-01:2024-04-30" and full["total"] == "38.80"  # 28.80 + 10.00
    assert moved_in["period"]["start"] == "2024-04-16" and moved_in["determinants"]["days"] == 15
    assert moved_in["total"] == "19.40" and moved_in["estimated_share"] == 0.25  # 14.40 + 5.00
    assert [line["code"] for line in moved_in["lines"]] == ["energy.off", "cust"]
