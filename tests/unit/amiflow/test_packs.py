"""Packing rows into packed days (pure numpy): grouping by meter, channel and UTC day, refusing what a pack cannot
hold exactly."""

from __future__ import annotations

import numpy as np

from amiflow.db.packing import build_packs


def test_build_packs_groups_unsorted_rows_and_refuses_odd_ones() -> None:
    day = 20_000
    base = day * 86_400 * 1_000_000
    ts = base + 900_000_000 * np.array([1, 96, 2, 3, 97, 1])  # the 97th slot is the next day's first
    packs = build_packs(np.array([1, 1, 2, 1, 1, 3]), np.array([1, 1, 1, 1, 1, 1]), ts,
                        np.array([1.0, 2.0, 3.0, 4.0, 5.0, np.inf]), np.array([0, 1, 0, 0, 0, 0]))  # fmt: skip
    keys = list(zip(packs.meter_id.tolist(), packs.day.tolist(), packs.readings.tolist(), strict=True))
    assert keys == [(1, day, 3), (1, day + 1, 1), (2, day, 1)] and packs.unpackable == 1
    assert packs.value[0, [0, 2, 95]].tolist() == [1.0, 4.0, 2.0] and packs.quality[0, 95] == 1
    assert packs.value[1, 0] == 5.0 and np.flatnonzero(~np.isnan(packs.value[2])).tolist() == [1]
    off = build_packs(np.array([1]), np.array([1]), np.array([base + 1]), np.array([1.0]), np.array([0]))
    assert len(off.meter_id) == 0 and off.unpackable == 1


def test_no_rows_no_packs() -> None:
    empty = np.zeros(0, dtype=np.int64)
    packs = build_packs(empty, empty, empty, np.zeros(0), empty)
    assert len(packs.meter_id) == 0 and packs.value.shape == (0, 96) and packs.unpackable == 0
