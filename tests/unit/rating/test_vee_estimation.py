"""VEE estimation: interpolation, like-day (across DST), fallbacks, register scaling, outages, flags, array helpers."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

from amiflow.types import QualityFlag
from rating.vee import METHODS, VeeConfig, VeeInput, local_start_s, outage_mask, run_vee
from rating.vee.row_ops import run_lengths

DAY = 96
START = 1_704_067_200  # 2024-01-01T00:00Z


def inp_of(values: np.ndarray, period_from: int, tz: str = "UTC", start: int = START, **kw: object) -> VeeInput:
    ts = start + 900 * np.arange(1, values.shape[1] + 1, dtype=np.int64)
    return VeeInput(ts, np.asarray(values, float), period_from, local_start_s(ts, 900, tz), **kw)  # type: ignore[arg-type]


def test_short_gap_is_interpolated_linearly() -> None:
    v = np.full((1, 21 * DAY), 100.0)
    p0 = 14 * DAY
    v[0, p0 + 9] = 100.0
    v[0, p0 + 14] = 200.0
    v[0, p0 + 10 : p0 + 14] = np.nan  # 4 intervals = 1 h: the default limit
    r = run_vee(inp_of(v, p0))
    assert np.allclose(r.post[0, 10:14], [120, 140, 160, 180])
    assert (r.method[0, 10:14] == METHODS.index("interpolated")).all()
    assert np.isnan(r.pre[0, 10:14]).all()  # the original (missing) is kept
    assert (r.flags[0, 10:14] & QualityFlag.ESTIMATED).all()
    assert not (r.flags[0, 10:14] & QualityFlag.EDITED).any()


def test_gap_at_the_period_start_interpolates_from_the_history() -> None:
    v = np.full((1, 15 * DAY), 100.0)
    p0 = 14 * DAY
    v[0, p0 : p0 + 2] = np.nan
    v[0, p0 + 2] = 160.0
    r = run_vee(inp_of(v, p0))
    assert np.allclose(r.post[0, :2], [120, 140])


def test_longer_gap_uses_like_day_of_previous_weeks() -> None:
    weeks = 3
    t = (weeks * 7 + 7) * DAY
    slot = np.arange(t) % DAY
    v = np.tile(slot.astype(float), (1, 1))  # value = slot of the day
    p0 = weeks * 7 * DAY
    # the previous weeks' same weekday differ: 1x, 2x, 3x offsets -> the mean of the last N weeks
    for k in range(1, weeks + 1):
        v[0, p0 + 3 * DAY - k * 7 * DAY : p0 + 4 * DAY - k * 7 * DAY] += 10 * k
    v[0, p0 + 3 * DAY + 20 : p0 + 3 * DAY + 40] = np.nan  # 5 h gap on period day 3
    r = run_vee(inp_of(v, p0), VeeConfig(like_day_weeks=weeks))
    got = r.post[0, 3 * DAY + 20 : 3 * DAY + 40]
    assert np.allclose(got, np.arange(20, 40) + 20.0)  # mean of +10, +20, +30
    assert (r.method[0, 3 * DAY + 20 : 3 * DAY + 40] == METHODS.index("like_day")).all()
    r2 = run_vee(inp_of(v, p0), VeeConfig(like_day_weeks=1))
    assert np.allclose(r2.post[0, 3 * DAY + 20 : 3 * DAY + 40], np.arange(20, 40) + 10.0)


def test_like_day_matches_local_time_across_dst() -> None:
    tz = ZoneInfo("America/Chicago")
    start = int(datetime(2024, 2, 25, tzinfo=tz).timestamp())  # DST starts 2024-03-10
    end = int(datetime(2024, 3, 18, tzinfo=tz).timestamp())
    n = (end - start) // 900
    ts = start + 900 * np.arange(1, n + 1, dtype=np.int64)
    local = local_start_s(ts, 900, "America/Chicago")
    hour = (local % 86400) // 3600
    v = hour.astype(float)[None, :] * 10  # value = 10 x the local hour
    p0 = int(np.searchsorted(ts, int(datetime(2024, 3, 10, tzinfo=tz).timestamp()), side="right"))
    day_after = np.flatnonzero(local // 86400 == local[p0] // 86400 + 1)  # 2024-03-11, first CDT weekday
    v[0, day_after[28:60]] = np.nan  # 07:00-15:00 local
    r = run_vee(VeeInput(ts, v, p0, local), VeeConfig(like_day_weeks=2))
    cols = day_after[28:60] - p0
    assert np.allclose(r.post[0, cols], hour[day_after[28:60]] * 10)  # not shifted by the DST hour


def test_fallback_to_the_meters_daily_profile_without_history() -> None:
    slot = np.arange(10 * DAY) % DAY
    v = slot.astype(float)[None, :]
    v[0, 2 * DAY + 10 : 2 * DAY + 30] = np.nan  # no earlier week: like-day impossible
    r = run_vee(inp_of(v, 0))
    assert np.allclose(r.post[0, 2 * DAY + 10 : 2 * DAY + 30], np.arange(10, 30))
    assert (r.method[0, 2 * DAY + 10 : 2 * DAY + 30] == METHODS.index("profile")).all()


def test_like_day_is_scaled_to_the_register_delta() -> None:
    v = np.full((1, 21 * DAY), 100.0)
    p0 = 14 * DAY
    v[0, p0 + DAY : p0 + 2 * DAY] = np.nan  # a day lost; the register says it used 12 kWh, not 9.6
    actual = 100.0 * (7 * DAY - DAY)
    r = run_vee(inp_of(v, p0, register_delta_wh=np.array([actual + 12_000.0])))
    assert np.allclose(r.post[0, DAY : 2 * DAY], 12_000.0 / DAY)
    assert r.post[0].sum() == np.float64(actual + 12_000.0)
    assert int(r.counts["sum_check"][0]) == 0


def test_missing_during_an_outage_is_zero() -> None:
    v = np.full((1, 21 * DAY), 100.0)
    p0 = 14 * DAY
    v[0, p0 + 50 : p0 + 70] = np.nan
    outage = np.zeros(v.shape, dtype=bool)
    outage[0, p0 + 48 : p0 + 72] = True
    r = run_vee(inp_of(v, p0, outage=outage))
    assert (r.post[0, 50:70] == 0).all()
    assert (r.method[0, 50:70] == METHODS.index("outage")).all()
    assert (r.flags[0, 48:72] & QualityFlag.OUTAGE).all()


def test_replaced_values_are_flagged_edited_and_the_original_kept() -> None:
    v = np.full((1, 15 * DAY), 100.0)
    p0 = 14 * DAY
    v[0, p0 + 5] = -40.0
    v[0, p0 + 30] = 9000.0
    r = run_vee(inp_of(v, p0))
    assert r.pre[0, 5] == -40.0 and r.pre[0, 30] == 9000.0
    assert r.post[0, 5] == 100.0 and r.post[0, 30] == 100.0
    for c, flag in ((5, QualityFlag.NEGATIVE), (30, QualityFlag.SPIKE)):
        assert r.flags[0, c] & (QualityFlag.ESTIMATED | QualityFlag.EDITED | flag) == (
            QualityFlag.ESTIMATED | QualityFlag.EDITED | flag
        )
    s = r.summary(0)
    assert s["estimated"] == 2 and s["edited"] == 2 and s["rules"] == {"negative": 1, "spike_neighbours": 1}
    assert r.changed.sum() == 2


def test_estimated_share_and_max_interp_setting() -> None:
    v = np.full((1, 15 * DAY), 100.0)
    p0 = 14 * DAY
    v[0, p0 + 10 : p0 + 18] = np.nan  # 2 h
    r = run_vee(inp_of(v, p0))
    assert (r.method[0, 10:18] == METHODS.index("like_day")).all()
    assert r.estimated_share[0] == 8 / DAY
    r2 = run_vee(inp_of(v, p0), VeeConfig(max_interp_s=7200))
    assert (r2.method[0, 10:18] == METHODS.index("interpolated")).all()


def test_outage_mask_windows() -> None:
    ts = START + 900 * np.arange(1, 11)
    m = outage_mask(ts, 900, 3, [0, 0, 1, 2], [ts[2] - 100, ts[5] + 1, ts[7], ts[8] - 10], [True, False, False, True])
    assert m[0].tolist() == [False, False, True, True, True, True, True, False, False, False]
    assert m[1].tolist() == [True] * 8 + [False] * 2  # an up without a down: dark since before the range
    assert m[2].tolist() == [False] * 8 + [True] * 2  # a down without an up: still dark
    assert not outage_mask(ts, 900, 2, [], [], []).any()


def test_run_lengths() -> None:
    mask = np.array([[1, 1, 0, 1, 1, 1], [0, 0, 0, 0, 0, 1]], dtype=bool)
    assert run_lengths(mask).tolist() == [[2, 2, 0, 3, 3, 3], [0, 0, 0, 0, 0, 1]]
