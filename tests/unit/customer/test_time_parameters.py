"""ESPI LocalTimeParameters read off real zones: offsets and the DST rule bit maps of usage.xsd's DstRuleType."""

from __future__ import annotations

from datetime import datetime

import pytest

from billing_bridge.customer.time_parameters import NO_DST, dst_rule, time_parameters


def test_the_schema_example_rule() -> None:
    # usage.xsd: "DST starts on third Friday in March at 1:45 AM": seconds 2700, hours 1, weekday 5, operator 4, month 3
    assert dst_rule(datetime(2026, 3, 20, 1, 45)) == 2700 | 1 << 12 | 5 << 17 | 4 << 25 | 3 << 28


@pytest.mark.parametrize(
    ("tz", "offset", "dst", "start", "end"),
    [
        ("America/New_York", -18000, 3600, "360E2000", "B40E2000"),  # 2nd Sunday of March, 1st of November, 02:00
        ("America/Los_Angeles", -28800, 3600, "360E2000", "B40E2000"),
        ("Europe/Berlin", 3600, 3600, "3E0E2000", "AE0E3000"),  # last Sunday of March 02:00, of October 03:00
        ("Australia/Sydney", 36000, 3600, "A40E2000", "440E3000"),  # southern: starts in October
        ("UTC", 0, 0, "FFFFFFFF", "FFFFFFFF"),
        ("Asia/Kolkata", 19800, 0, "FFFFFFFF", "FFFFFFFF"),
    ],
)
def test_zones(tz: str, offset: int, dst: int, start: str, end: str) -> None:
    p = time_parameters(tz, 2026)
    assert (p.tz_offset_s, p.dst_offset_s) == (offset, dst)
    assert (f"{p.dst_start_rule:08X}", f"{p.dst_end_rule:08X}") == (start, end)


def test_no_dst_is_all_ones() -> None:
    assert NO_DST == 0xFFFFFFFF == time_parameters("Asia/Tokyo", 2026).dst_start_rule
