"""The plausibility window of the core: placeholder dates are outside it, measuring them never overflows, and the
reading validator quarantines by the same window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from amiflow.plausibility import FUTURE_TS, TOO_OLD, Window, epoch_s
from amiflow.types import ReadingBatch
from ingest.validate import Bounds, validate

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
WINDOW = Window.from_days(3650, 3600)


@pytest.mark.parametrize(
    "at",
    [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),  # the year 1 BC in UTC
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-1))),  # the year 10000 in UTC
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),
    ],
)
def test_placeholder_dates_are_outside_and_measured_without_overflow(at: datetime) -> None:
    assert isinstance(epoch_s(at), float)
    reason = WINDOW.reason(at, NOW)
    assert reason is not None and "plausibility window" in reason


def test_the_edges_of_the_window() -> None:
    assert WINDOW.reason(NOW - timedelta(days=3650), NOW) is None
    assert WINDOW.reason(NOW + timedelta(seconds=3600), NOW) is None
    assert "3650 days before" in (WINDOW.reason(NOW - timedelta(days=3650, seconds=1), NOW) or "")
    assert "3600 s after" in (WINDOW.reason(NOW + timedelta(seconds=3601), NOW) or "")
    assert (
        epoch_s(datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))))
        == datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    )
    with pytest.raises(ValueError, match="no UTC offset"):
        epoch_s(datetime(2026, 1, 1))


def test_readings_are_quarantined_by_the_same_window() -> None:
    now_ts = int(NOW.timestamp())
    ts = [now_ts - 401 * 86400, now_ts - 900, now_ts + 301, int(epoch_s(datetime(1, 1, 1, tzinfo=UTC)))]
    batch = ReadingBatch.from_columns("M", "1-0:1.29.0", np.array(ts), [1.0, 1.0, 1.0, 1.0], unit="Wh")
    verdict = validate(batch, now_ts=now_ts, bounds=Bounds(clock_skew_future_s=300, reading_horizon_days=400))
    assert verdict.reason.tolist() == [TOO_OLD, "", FUTURE_TS, TOO_OLD]
    too_old, future = Window.from_days(400, 300).outside(np.array(ts), now_ts)
    assert (too_old | future).tolist() == [True, False, True, True]
