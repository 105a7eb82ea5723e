"""The vectorised profile decoder agrees with the one-cell-at-a-time decoder on every buffer, and falls back when
the rows are not uniform (null compression, strings, unspecified or impossible dates)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amiflow.errors import FrameError
from protocols.dlms import axdr
from protocols.dlms.cosem import DateTime, Deviation
from protocols.dlms.profile import _uniform, decode_profile_fast
from protocols.dlms.profile_generic import decode_profile

NUMBERS = [
    (axdr.DoubleLongUnsigned, st.integers(0, 2**32 - 1)),
    (axdr.DoubleLong, st.integers(-(2**31), 2**31 - 1)),
    (axdr.LongUnsigned, st.integers(0, 2**16 - 1)),
    (axdr.Long64, st.integers(-(2**63), 2**63 - 1)),
    (axdr.Integer, st.integers(-128, 127)),
    (axdr.Float64, st.floats(allow_nan=False)),
]


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(a, b, equal_nan=True))


@st.composite
def buffers(draw: st.DrawFn) -> tuple[bytes, int, Deviation]:
    kinds = draw(st.lists(st.sampled_from(range(len(NUMBERS))), min_size=1, max_size=4))
    clock_col = draw(st.integers(0, len(kinds)))
    deviation = draw(st.sampled_from([0, 60, -120, -0x8000]))
    start = draw(st.datetimes(datetime(1990, 1, 1), datetime(2090, 1, 1), timezones=st.just(UTC)))
    nrows = draw(st.integers(1, 20))
    rows = []
    for r in range(nrows):
        cells = [NUMBERS[k][0](draw(NUMBERS[k][1])) for k in kinds]
        when = DateTime.from_datetime(start + timedelta(minutes=15 * r))
        raw = DateTime(
            when.year, when.month, when.day, when.hour, when.minute, when.second, 0xFF, deviation, 0, when.weekday
        ).to_bytes()
        cells.insert(clock_col, raw)
        rows.append(tuple(cells))
    return axdr.encode(rows), clock_col, draw(st.sampled_from(list(Deviation)))


@settings(max_examples=200, deadline=None)
@given(buffers())
def test_fast_equals_reference(case: tuple[bytes, int, Deviation]) -> None:
    raw, clock_col, convention = case
    assert _uniform(raw, clock_col, convention) is not None  # the vectorised path, not the fallback
    fast = decode_profile_fast(raw, clock_col, 900, convention)
    ref = decode_profile(raw, clock_col, 900, convention)
    assert _same(fast.ts, ref.ts) and _same(fast.values, ref.values)


def _row(when: datetime, value: int) -> tuple[object, ...]:
    return (DateTime.from_datetime(when).to_bytes(), axdr.DoubleLongUnsigned(value))


def test_non_uniform_buffers_fall_back() -> None:
    t0 = datetime(2026, 2, 28, 23, 45, tzinfo=UTC)
    compressed = axdr.encode([_row(t0, 1), (None, axdr.DoubleLongUnsigned(2)), (None, None)])
    out = decode_profile_fast(compressed, 0, 900)
    assert out.ts.tolist() == [int(t0.timestamp()) + 900 * i for i in range(3)]
    assert out.values[:, 1].tolist() == [1.0, 2.0, 2.0]
    bad_day = bytearray(axdr.encode([_row(t0, 1), _row(t0, 2)]))
    bad_day[-5 - 12 + 3] = 30  # 30 February: the vectorised check refuses, the reference decoder names it
    with pytest.raises(FrameError):
        decode_profile_fast(bytes(bad_day), 0, 900)


def test_truncated_buffer_is_a_frame_error() -> None:
    raw = axdr.encode([_row(datetime(2026, 1, 1, tzinfo=UTC), i) for i in range(5)])
    for cut in range(1, len(raw)):
        with pytest.raises(FrameError):
            decode_profile_fast(raw[:cut], 0, 900)
