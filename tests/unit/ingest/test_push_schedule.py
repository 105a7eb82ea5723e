"""Sampling a push stream and interval energy from the register at boundaries: one sample per window, one interval
per pair of consecutive boundaries, never one across a missed boundary or a register that went back."""

from __future__ import annotations

import pytest

from amiflow.errors import ConfigError
from amiflow.types import ReadingBatch, Source
from ingest.push_schedule import INTERVAL_OBIS, Boundary, PushSchedule, import_register_wh

T0 = 1_790_000_100 // 900 * 900  # an interval boundary


def _frame(ts: int, wh: float, *, tariffs: bool = False) -> ReadingBatch:
    obis = ["1-0:1.8.1", "1-0:1.8.2", "1-0:1.7.0"] if tariffs else ["1-0:1.8.0", "1-0:1.7.0"]
    values = [wh - 100.0, 100.0, 420.0] if tariffs else [wh, 420.0]
    units = ["Wh", "Wh", "W"] if tariffs else ["Wh", "W"]
    return ReadingBatch.from_columns("M1", obis, [ts] * len(obis), values, unit=units, source=Source.SML)


def _run(schedule: PushSchedule, frames: list[ReadingBatch]) -> tuple[ReadingBatch, list[Boundary]]:
    stored, marks = [], []
    for f in frames:
        batch, mark = schedule.take(f)
        stored.append(batch)
        if mark is not None:
            marks.append(mark)
    return ReadingBatch.concat(stored), marks


def test_samples_and_intervals_from_a_frame_every_2_s() -> None:
    # starts 10 s before a boundary, 1 Wh per 2 s, for three intervals
    frames = [_frame(T0 - 10 + s, 1000.0 + s / 2) for s in range(0, 2720, 2)]
    stored, marks = _run(PushSchedule(interval_s=900, sample_s=60), frames)
    intervals = stored.take(stored.obis == INTERVAL_OBIS)
    assert intervals.ts.tolist() == [T0 + 900, T0 + 1800, T0 + 2700]
    assert intervals.value.tolist() == [450.0, 450.0, 450.0]
    assert [m.ts for m in marks] == [T0, T0 + 900, T0 + 1800, T0 + 2700]
    registers = stored.take(stored.obis == "1-0:1.8.0")
    assert len(set((registers.ts // 60).tolist())) == len(registers)  # one frame per 60 s window
    assert T0 + 900 in registers.ts.tolist()  # the boundary frame is always stored


def test_no_interval_across_a_missed_boundary_or_a_register_that_went_back() -> None:
    late = [_frame(T0, 1000.0), _frame(T0 + 900 + 120, 1500.0), _frame(T0 + 1800, 1900.0), _frame(T0 + 2700, 2300.0)]
    stored, marks = _run(PushSchedule(), late)
    assert stored.take(stored.obis == INTERVAL_OBIS).ts.tolist() == [T0 + 2700]
    assert [m.ts for m in marks] == [T0, T0 + 1800, T0 + 2700]
    back = [_frame(T0, 1000.0), _frame(T0 + 900, 900.0), _frame(T0 + 1800, 950.0)]
    stored, _ = _run(PushSchedule(), back)
    assert stored.take(stored.obis == INTERVAL_OBIS).value.tolist() == [50.0]


def test_a_restarted_reader_continues_from_the_stored_boundary() -> None:
    schedule = PushSchedule(last=Boundary(T0, 1000.0))
    stored, marks = _run(schedule, [_frame(T0 + 30, 1010.0), _frame(T0 + 905, 1200.0)])
    assert [m.ts for m in marks] == [T0 + 900]  # the boundary already stored is not marked again
    interval = stored.take(stored.obis == INTERVAL_OBIS)
    assert interval.ts.tolist() == [T0 + 900] and interval.value.tolist() == [200.0]
    assert set(interval.source.tolist()) == {int(Source.SML)} and set(interval.meter.tolist()) == {"M1"}


def test_every_frame_with_sample_0_and_the_tariff_sum_without_a_total() -> None:
    stored, _ = _run(PushSchedule(sample_s=0), [_frame(T0 + s, 1000.0, tariffs=True) for s in range(5)])
    assert len(stored) == 15
    assert import_register_wh(_frame(T0, 1234.0, tariffs=True)) == (T0, 1234.0)
    assert import_register_wh(ReadingBatch.from_columns("M", ["1-0:1.7.0"], [T0], [1.0], unit="W")) is None


def test_bad_settings() -> None:
    with pytest.raises(ConfigError, match="boundary_window_s"):
        PushSchedule(interval_s=60, boundary_window_s=60)
