"""Local time: DST days of 92 and 100 quarter hours, leap years, interval placement across the offset change."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from amiflow.errors import RatingError
from rating.time_axis import build_axis

from .conftest import axis_ts, lines, rate, tariff

NY = "America/New_York"
# hours 1 and 2 local are "night": on 2024-03-10 local 02:00-03:00 does not exist;
# on 2024-11-03 01:00-02:00 happens twice
NIGHT = {"default": "day", "rules": ["night: all 1-3"]}
RATES = {"rates": {"night": "1", "day": "0"}}


def test_spring_forward_day_has_92_quarter_hours() -> None:
    day = (date(2024, 3, 10), date(2024, 3, 11))
    ts = axis_ts(*day, tz=NY)
    assert len(ts) == 92
    b = rate(tariff(tou=NIGHT, energy=RATES, fixed=[{"code": "d", "amount": "1", "per": "day"}]), *day, 100.0, tz=NY)
    # only local hour 1 exists: 4 quarter hours x 100 Wh = 0.4 kWh night, 8.8 kWh day
    assert lines(b)["energy.night"] == (400, 40)
    assert int(b.determinants["import_kwh"][0]) == 9200
    assert lines(b)["d"] == (1000, 100)  # still one day
    assert (
        b.start_utc.isoformat() == "2024-03-10T05:00:00+00:00" and b.end_utc.isoformat() == "2024-03-11T04:00:00+00:00"
    )


def test_fall_back_day_has_100_quarter_hours() -> None:
    day = (date(2024, 11, 3), date(2024, 11, 4))
    assert len(axis_ts(*day, tz=NY)) == 100
    b = rate(tariff(tou=NIGHT, energy=RATES), *day, 100.0, tz=NY)
    # local hour 1 twice (8 quarter hours) + hour 2 once (4) = 12 x 100 Wh = 1.2 kWh night
    assert lines(b)["energy.night"] == (1200, 120)
    assert int(b.determinants["import_kwh"][0]) == 10_000


def test_dst_month_demand_and_days() -> None:
    march = (date(2024, 3, 1), date(2024, 4, 1))
    ts = axis_ts(*march, tz=NY)
    assert len(ts) == 31 * 96 - 4
    t = tariff(demand=[{"code": "dem", "rates": {"all": "1"}, "interval_min": 60}])
    axis = build_axis(t, ts, NY)
    x = np.full((1, len(ts)), 100.0)
    # 2 kWh in the hour starting 03:00 EDT on the DST day (the hour after the gap)
    x[0, (axis.day == axis.day[0] + 9) & (axis.hour == 3)] = 500.0
    b = rate(t, *march, x, tz=NY)
    assert lines(b)["dem.all"] == (2000, 200)
    assert int(b.days[0]) == 31


def test_leap_february() -> None:
    feb = (date(2024, 2, 1), date(2024, 3, 1))
    assert len(axis_ts(*feb)) == 29 * 96
    t = tariff(fixed=[{"code": "d", "amount": "0.50", "per": "day"}, {"code": "m", "amount": "9.00"}])
    b = rate(t, *feb, 100.0)
    # 29 days x 9.6 kWh = 278.4 kWh x 0.10 = 27.84; 0.50 x 29 = 14.50; monthly 9.00
    assert lines(b) == {"energy.off": (278_400, 2784), "d": (29_000, 1450), "m": (1000, 900)}
    # Feb 29 alone is a day of its own, and a Thursday
    leap_day = (date(2024, 2, 29), date(2024, 3, 1))
    axis = build_axis(t, axis_ts(*leap_day), "UTC")
    assert set(axis.day_type.tolist()) == {0} and set(axis.month.tolist()) == {1}
    assert len(axis_ts(date(2023, 2, 1), date(2023, 3, 1))) == 28 * 96


def test_half_hour_offset_zone() -> None:
    # Asia/Kolkata is UTC+05:30: local hour 1 starts at 19:30 UTC the day before
    t = tariff(tou=NIGHT, energy=RATES)
    day = (date(2024, 4, 1), date(2024, 4, 2))
    b = rate(t, *day, 100.0, tz="Asia/Kolkata")
    assert lines(b)["energy.night"] == (800, 80)  # 2 h x 4 x 100 Wh
    assert b.start_utc.isoformat() == "2024-03-31T18:30:00+00:00"


def test_bad_axis_inputs() -> None:
    t = tariff()
    with pytest.raises(RatingError, match="time zone"):
        build_axis(t, np.array([900, 1800]), "Mars/Olympus")
    with pytest.raises(RatingError, match="uniform"):
        build_axis(t, np.array([900, 1800, 3600]), "UTC")


@pytest.mark.parametrize("minutes", [15, 30, 60])
def test_repeated_hour_is_two_demand_blocks(minutes: int) -> None:
    # flat 0.4 kW through the fall-back day: the twice-occurring 01:00 hour must not become one 2-hour block
    t = tariff(demand=[{"code": "dem", "rates": {"all": "1"}, "interval_min": minutes}])
    b = rate(t, date(2024, 11, 3), date(2024, 11, 4), 100.0, tz=NY)
    assert int(b.determinants["peak_kw.dem.all"][0]) == 400
