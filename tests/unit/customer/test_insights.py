"""The pure parts of the insights: baseload, peak hours, months, the what-if tariff and customer classes."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import numpy as np

from billing_bridge.customer.insights import baseload_w, month_after, peak_hours
from billing_bridge.customer.tariff_advice import customer_class, what_if
from billing_bridge.customer.usage import Channel
from rating import TariffSpec

TZ = "America/Chicago"


def _channel(wh_of_hour: list[float], days: int = 7) -> Channel:
    lo = int(datetime(2026, 6, 1, tzinfo=ZoneInfo(TZ)).timestamp())
    ts = lo + 900 * np.arange(1, days * 96 + 1, dtype=np.int64)
    hour = ((np.arange(len(ts))) // 4) % 24
    wh = np.array(wh_of_hour, dtype=np.float64)[hour]
    zeros = np.zeros(len(ts), np.int32)
    return Channel("1-0:1.29.0", "import", ts, wh, zeros, zeros.astype(np.int8), 900, False)


def test_baseload_is_the_low_night_power_in_watts() -> None:
    profile = [50.0] * 24
    profile[2] = 25.0  # 25 Wh a quarter hour = 100 W, the lowest night hour
    profile[12] = 5.0  # a midday low does not count: baseload is a night figure
    assert baseload_w(_channel(profile), TZ) == 100.0


def test_peak_hours_busiest_first() -> None:
    profile = [10.0] * 24
    profile[18], profile[19], profile[7] = 500.0, 400.0, 300.0
    assert peak_hours(_channel(profile), TZ) == ((18, 2.0), (19, 1.6), (7, 1.2))


def test_month_after() -> None:
    assert month_after(date(2026, 11, 15)) == date(2026, 12, 1)
    assert month_after(date(2026, 12, 1)) == date(2027, 1, 1)
    assert month_after(date(2026, 1, 31), -1) == date(2025, 12, 1)
    assert month_after(date(2026, 3, 1), -12) == date(2025, 3, 1)


def _spec(tid: str, name: str = "") -> TariffSpec:
    return TariffSpec.model_validate(
        {"id": tid, "name": name, "effective_from": "2024-01-01", "effective_to": "2025-01-01",
         "tou": {"default": "all"}, "energy": {"rates": {"all": "0.2"}}}
    )  # fmt: skip


def test_what_if_lifts_the_effective_dates() -> None:
    spec = _spec("res-flat")
    assert not spec.covers(date(2026, 11, 1), date(2026, 12, 1))
    assert what_if(spec).covers(date(2026, 11, 1), date(2026, 12, 1)) and what_if(spec).covers(
        date(1990, 1, 1), date(1990, 2, 1)
    )
    assert what_if(spec).energy == spec.energy and what_if(spec).id == spec.id


def test_customer_class() -> None:
    assert customer_class(_spec("res-tou-tiers")) == "residential"
    assert customer_class(_spec("com-tou-demand")) == "commercial"
    assert customer_class(_spec("X1", "Small Business TOU")) == "commercial"
    assert customer_class(_spec("X2", "Flat rate")) is None
    assert customer_class(_spec("res-x", "Commercial")) is None  # contradictory: unknown
