"""The load model: deterministic, chunk- and subset-independent, plausible, registers exact to the Wh."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from amiflow.errors import ConfigError
from simulators.load import LoadModel

DAY = 86_400
WINTER = int(datetime(2026, 1, 12, tzinfo=UTC).timestamp())  # a Monday
SUMMER = int(datetime(2026, 7, 13, tzinfo=UTC).timestamp())  # a Monday


def day_ends(start: int, days: int = 1, interval_s: int = 900) -> np.ndarray:
    return start + interval_s * np.arange(1, days * DAY // interval_s + 1, dtype=np.int64)


def test_same_seed_same_numbers_other_seed_other_numbers() -> None:
    ts = day_ends(WINTER)
    a = LoadModel(11).interval_energy_wh(np.arange(50), ts)
    b = LoadModel(11).interval_energy_wh(np.arange(50), ts)
    c = LoadModel(12).interval_energy_wh(np.arange(50), ts)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_chunking_of_time_and_meters_does_not_change_a_value() -> None:
    model = LoadModel(5)
    ts = day_ends(WINTER, days=3)
    whole = model.interval_energy_wh(np.arange(40), ts)
    by_time = np.concatenate([model.interval_energy_wh(np.arange(40), part) for part in np.array_split(ts, 7)], axis=1)
    by_meter = np.stack([model.interval_energy_wh(m, ts) for m in range(40)])
    subset = model.interval_energy_wh(np.array([39, 3, 17]), ts[::5])
    assert np.array_equal(whole, by_time)
    assert np.array_equal(whole, by_meter)
    assert np.array_equal(subset, whole[[39, 3, 17]][:, ::5])
    exp = model.export_energy_wh(np.arange(40), ts)
    exp_by_time = np.concatenate([model.export_energy_wh(np.arange(40), p) for p in np.array_split(ts, 5)], axis=1)
    assert np.array_equal(exp, exp_by_time)


def test_registers_are_consistent_with_intervals_to_the_wh() -> None:
    model = LoadModel(3)
    meters = np.arange(200)
    ts = day_ends(SUMMER, days=2)
    bounds = np.concatenate([[SUMMER], ts])
    reg = model.register_wh(meters, bounds)
    assert np.array_equal(np.diff(reg, axis=1), model.interval_energy_wh(meters, ts))
    ereg = model.export_register_wh(meters, bounds)
    assert np.array_equal(np.diff(ereg, axis=1), model.export_energy_wh(meters, ts))
    # whole Wh, positive, and far from the start of counting (a seeded offset plus years of energy)
    assert np.array_equal(reg, np.floor(reg)) and (reg > 0).all()
    # a register far away in time agrees with one computed from a month of intervals
    month = day_ends(SUMMER, days=31)
    total = model.interval_energy_wh(meters[:5], month).sum(axis=1)
    assert np.array_equal(model.register_wh(meters[:5], month[-1]) - model.register_wh(meters[:5], SUMMER), total)


def test_other_interval_lengths_add_up_to_the_15_minute_ones() -> None:
    model = LoadModel(8)
    hourly = model.interval_energy_wh(np.arange(10), day_ends(WINTER, interval_s=3600), interval_s=3600)
    quarter = model.interval_energy_wh(np.arange(10), day_ends(WINTER))
    assert np.array_equal(hourly, quarter.reshape(10, 24, 4).sum(axis=2))


def test_daily_energy_is_plausible_by_kind() -> None:
    model = LoadModel(21)
    meters = np.arange(5000)
    daily_kwh = model.interval_energy_wh(meters, day_ends(WINTER)).sum(axis=1) / 1000
    kind = model.kind(meters)
    res, com = daily_kwh[kind == "residential"], daily_kwh[kind == "commercial"]
    assert 0.15 < com.size / meters.size < 0.25  # commercial_share=0.2
    assert 5 < np.median(res) < 20 and res.min() > 0.5 and res.max() < 150
    assert 30 < np.median(com) < 300 and com.max() < 5000
    assert (model.interval_energy_wh(meters, day_ends(WINTER)) >= 0).all()


def test_weekday_weekend_and_season_patterns() -> None:
    model = LoadModel(4, pv_share=0.0)
    meters = np.arange(3000)
    kind = model.kind(meters)
    com = meters[kind == "commercial"]
    weekday = model.interval_energy_wh(com, day_ends(WINTER + 2 * DAY)).sum()  # Wednesday
    sunday = model.interval_energy_wh(com, day_ends(WINTER - DAY)).sum()
    assert sunday < 0.75 * weekday
    # commercial load is a business-hours shape: 10:00-16:00 well above 00:00-05:00
    prof = model.interval_energy_wh(com, day_ends(WINTER + 2 * DAY)).sum(axis=0)
    assert prof[40:64].mean() > 2 * prof[0:20].mean()
    # residential: the evening peak (18:00-21:00) is above the night (01:00-05:00)
    res = meters[kind == "residential"]
    rprof = model.interval_energy_wh(res, day_ends(WINTER + 2 * DAY)).sum(axis=0)
    assert rprof[72:84].mean() > 1.5 * rprof[4:20].mean()
    # seasons differ per meter (heating or cooling): a meter's January and July days are not the same total
    jan = model.interval_energy_wh(res, day_ends(WINTER, days=7)).sum(axis=1)
    jul = model.interval_energy_wh(res, day_ends(SUMMER, days=7)).sum(axis=1)
    assert (np.abs(jan / jul - 1) > 0.1).mean() > 0.5


def test_pv_exports_only_in_daylight_and_more_in_summer() -> None:
    model = LoadModel(9, pv_share=0.5)
    meters = np.arange(400)
    pv = model.has_pv(meters)
    assert 0.4 < pv.mean() < 0.6
    for start in (WINTER, SUMMER):
        ts = day_ends(start)
        exp = model.export_energy_wh(meters, ts)
        assert (exp[~pv] == 0).all()
        night = ~model.sunlit(ts - 450)
        assert night.any() and (exp[:, night] == 0).all()
        assert (exp[pv][:, ~night].sum(axis=1) > 0).all()
    winter = model.export_energy_wh(meters[pv], day_ends(WINTER, days=7)).sum()
    summer = model.export_energy_wh(meters[pv], day_ends(SUMMER, days=7)).sum()
    assert summer > 2 * winter
    assert (model.export_register_wh(meters[~pv], [WINTER, SUMMER]) == 0).all()


def test_local_time_shifts_the_shape() -> None:
    utc = LoadModel(2, utc_offset_s=0).interval_energy_wh(np.arange(300), day_ends(WINTER, days=2)).sum(axis=0)
    est = LoadModel(2, utc_offset_s=-5 * 3600).interval_energy_wh(np.arange(300), day_ends(WINTER, days=2)).sum(axis=0)
    assert np.argmax(est[96:]) - np.argmax(utc[96:]) in range(16, 25)  # the evening peak 5 h later in UTC


def test_scalar_and_array_forms() -> None:
    model = LoadModel(1)
    ts = day_ends(WINTER)
    assert model.interval_energy_wh(7, ts).shape == (96,)
    assert model.interval_energy_wh(np.array([7]), ts).shape == (1, 96)
    assert model.kind(7) in ("residential", "commercial")
    assert bool(model.has_pv(7)) == bool(model.has_pv(np.arange(10))[7])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pv_share": 1.5}, "pv_share"),
        ({"commercial_share": -0.1}, "commercial_share"),
        ({"utc_offset_s": 90_000}, "utc"),
    ],
)
def test_bad_parameters_are_config_errors(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LoadModel(1, **kwargs)  # type: ignore[arg-type]


def test_times_before_2000_and_negative_meters_are_refused() -> None:
    with pytest.raises(ConfigError, match="2000"):
        LoadModel(1).interval_energy_wh(0, np.array([900_000_000]))
    with pytest.raises(ConfigError, match="meter"):
        LoadModel(1).interval_energy_wh(-1, day_ends(WINTER))
