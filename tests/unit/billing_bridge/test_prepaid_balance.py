"""Prepaid: interval cost, threshold crossings and which intervals may be charged."""

from __future__ import annotations

from decimal import Decimal

import numpy as np

from billing_bridge.prepaid import _chargeable, crossed_thresholds, interval_cost

D = Decimal


def test_interval_cost_flat_and_per_interval_rates() -> None:
    wh = np.array([[250.0, 250.0, np.nan, 500.0], [1000.0, 0.0, 0.0, -5.0]])
    assert interval_cost(wh, 0.20) == D("0.4000")  # 2.0 kWh x 0.20; NaN and negative count 0
    rates = np.array([0.1, 0.1, 0.3, 0.3])
    assert interval_cost(wh, rates) == D("0.3000")  # 1.5 kWh at 0.1 + 0.5 kWh at 0.3


def test_crossed_thresholds() -> None:
    t = (D("10"), D("5"))
    assert crossed_thresholds(D("12"), D("9.99"), t) == [D("10")]
    assert crossed_thresholds(D("12"), D("4"), t) == [D("10"), D("5")]
    assert crossed_thresholds(D("10"), D("9"), t) == []  # already at 10 before: notified then
    assert crossed_thresholds(D("4"), D("20"), t) == []  # a top-up crosses nothing downwards


def test_chargeable_stops_at_a_fresh_gap_but_skips_an_old_one() -> None:
    ts = np.arange(1, 9, dtype=np.int64) * 900
    present = np.ones((2, 8), dtype=bool)
    assert _chargeable(present, ts, grace_ts=0) == 8
    present[1, 5] = False
    assert _chargeable(present, ts, grace_ts=0) == 5  # wait for the late interval
    assert _chargeable(present, ts, grace_ts=int(ts[6])) == 8  # older than the grace: skipped
