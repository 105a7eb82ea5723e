"""Time-of-use schedules: TOU rules or matrices -> one [day type, month, hour] lookup of period indices.

Rules are applied in order (later rules win)::

    rules = ["peak: weekdays 16-21 Jun-Sep", "part_peak: weekdays 14-16,21-23 summer", "peak: holidays 17-20 Jun-Sep"]

A rule is ``PERIOD: DAYS HOURS [MONTHS]``: DAYS a comma list of ``weekdays``, ``weekends``, ``holidays``, ``all``;
HOURS ``H1-H2`` ranges of local clock hours, end exclusive, wrapping past midnight (``21-6``), or ``all``; MONTHS
month names or ranges (``Nov-Mar`` wraps) or season names from ``[seasons]``; absent = all months. Holidays use the
weekend schedule unless some rule names ``holidays`` (or a ``holiday`` matrix is given).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from amiflow.errors import RatingError
from rating.tariff import TouSpec

__all__ = ["DAY_TYPES", "parse_rules", "tou_schedule"]

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAY_TYPES = ("weekday", "weekend", "holiday")  # the first axis of a schedule

_RULE = re.compile(r"^\s*(?P<period>[\w-]+)\s*:\s*(?P<days>[a-z,]+)\s+(?P<hours>[\d,\s-]+|all)\s*(?P<months>.*)$")


def _month(token: str) -> int:
    t = token.strip().lower()[:3]
    if t.isdigit() and 1 <= int(t) <= 12:
        return int(t)
    if t not in MONTHS:
        raise RatingError(f"unknown month {token!r}")
    return MONTHS.index(t) + 1


def _months(text: str, seasons: dict[str, list[str | int]]) -> list[int]:
    if not text.strip() or text.strip().lower() in ("all", "all-year", "year"):
        return list(range(1, 13))
    out: list[int] = []
    for part in re.split(r"[,\s]+", text.strip()):
        if not part:
            continue
        if part.lower() in {s.lower() for s in seasons}:
            season = next(v for k, v in seasons.items() if k.lower() == part.lower())
            out.extend(_month(str(m)) for m in season)
        elif "-" in part:
            a, b = (_month(x) for x in part.split("-", 1))
            out.extend(((a - 1 + i) % 12) + 1 for i in range((b - a) % 12 + 1))
        else:
            out.append(_month(part))
    return out


def _hours(text: str) -> list[int]:
    if text.strip() == "all":
        return list(range(24))
    out: list[int] = []
    for part in text.replace(" ", "").split(","):
        a_s, _, b_s = part.partition("-")
        if not (a_s.isdecimal() and (b_s.isdecimal() or not b_s)) or len(part) > 5:
            raise RatingError(f"bad hour range {part!r} (0-24, end exclusive)")
        a, b = int(a_s), int(b_s) if b_s else int(a_s) + 1
        if not (0 <= a <= 23 and 0 <= b <= 24) or a == b:
            raise RatingError(f"bad hour range {part!r} (0-24, end exclusive)")
        out.extend((a + i) % 24 for i in range((b - a) % 24 or 24))
    return out


def parse_rules(
    rules: Sequence[str], default: str, seasons: dict[str, list[str | int]], periods: Sequence[str] = ()
) -> tuple[tuple[str, ...], npt.NDArray[np.int8]]:
    """Rules -> (period names, int8 array [3 day types, 12 months, 24 hours] of period indices)."""
    names = list(periods) or [default]
    if default not in names:
        names.append(default)
    sched = np.full((3, 12, 24), names.index(default), dtype=np.int8)
    table = {"weekdays": {0}, "weekday": {0}, "weekends": {1}, "weekend": {1}, "holidays": {2},
             "holiday": {2}, "all": {0, 1, 2}, "everyday": {0, 1, 2}}  # fmt: skip
    mentions_holidays = False
    for rule in rules:
        m = _RULE.match(rule)
        if not m:
            raise RatingError(f"cannot read TOU rule {rule!r}: expected 'PERIOD: DAYS HOURS [MONTHS]'")
        kinds: set[int] = set()
        for d in m["days"].split(","):
            if d not in table:
                raise RatingError(f"TOU rule {rule!r}: unknown day type {d!r}")
            kinds |= table[d]
            mentions_holidays |= d in ("holidays", "holiday")
        period = m["period"]
        if period not in names:
            names.append(period)
        month_idx = [mo - 1 for mo in _months(m["months"], seasons)]
        hours = _hours(m["hours"])
        for k in kinds:
            sched[k][np.ix_(month_idx, hours)] = names.index(period)
    if not mentions_holidays:
        sched[2] = sched[1]
    if len(names) > 127:
        raise RatingError("more than 127 TOU periods")
    return tuple(names), sched


def tou_schedule(tou: TouSpec, seasons: dict[str, list[str | int]]) -> tuple[tuple[str, ...], npt.NDArray[np.int8]]:
    """A TouSpec (matrices or rules) as (period names, int8 [3, 12, 24])."""
    if tou.weekday is not None:
        wk = np.array(tou.weekday, dtype=np.int8)
        we = np.array(tou.weekend, dtype=np.int8) if tou.weekend is not None else wk
        ho = np.array(tou.holiday, dtype=np.int8) if tou.holiday is not None else we
        return tuple(tou.periods), np.stack([wk, we, ho])
    assert tou.default is not None
    return parse_rules(tou.rules, tou.default, seasons, tou.periods)
