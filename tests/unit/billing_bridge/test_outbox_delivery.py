"""Classification of billing answers and the retry schedule (pure core of the dispatcher)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_bridge.delivery import Verdict, backoff_s, classify_status, endpoint_for, retry_after_s


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.DELIVERED),
        (201, Verdict.DELIVERED),
        (202, Verdict.DELIVERED),
        (204, Verdict.DELIVERED),
        (409, Verdict.DELIVERED),
        (400, Verdict.REJECTED),
        (401, Verdict.REJECTED),
        (403, Verdict.REJECTED),
        (404, Verdict.REJECTED),
        (422, Verdict.REJECTED),
        (408, Verdict.RETRY),
        (425, Verdict.RETRY),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (502, Verdict.RETRY),
        (503, Verdict.RETRY),
        (504, Verdict.RETRY),
        (302, Verdict.RETRY),
    ],
)
def test_status_classification(status: int, verdict: Verdict) -> None:
    assert classify_status(status) is verdict


def test_endpoints() -> None:
    assert endpoint_for("bill") == "/bills"
    for kind in ("payment_reminder", "disconnect_warning", "disconnected", "reconnected", "disconnect_blocked"):
        assert endpoint_for(kind) == "/notices"


def test_backoff_doubles_then_caps() -> None:
    assert [backoff_s(n, 1.0, 10.0, 0.999999) for n in (1, 2, 3, 4, 5, 6)] == pytest.approx(
        [1.0, 2.0, 4.0, 8.0, 10.0, 10.0], rel=1e-5
    )
    assert backoff_s(3, 1.0, 10.0, 0.0) == pytest.approx(2.0)  # lower edge of the jitter: half the ceiling
    assert backoff_s(10_000, 1.0, 3600.0, 0.5) <= 3600.0  # no overflow for very old items


@given(st.integers(1, 200), st.floats(0.001, 10), st.floats(1, 7200), st.floats(0, 1, exclude_max=True))
def test_backoff_within_jitter_band(attempts: int, base: float, cap: float, draw: float) -> None:
    ceiling = min(cap, base * 2.0 ** min(attempts - 1, 62))
    delay = backoff_s(attempts, base, cap, draw)
    assert ceiling / 2 <= delay <= ceiling


def test_retry_after_is_a_lower_bound_capped_at_max() -> None:
    assert backoff_s(1, 1.0, 60.0, 0.0, retry_after=30.0) == 30.0
    assert backoff_s(1, 1.0, 60.0, 0.0, retry_after=600.0) == 60.0
    assert backoff_s(6, 1.0, 60.0, 0.999, retry_after=1.0) > 30.0
    assert retry_after_s("120") == 120.0
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert retry_after_s("-5") is None
    assert retry_after_s(None) is None
