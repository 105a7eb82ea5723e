"""What a prepaid account's new intervals cost under its meters' tariffs: the rating engine's monthly bill, drawn
down as the month goes (TOU periods, tiers, demand, export credits, fixed charges and taxes), not a flat rate.

For the meters of one tariff and time zone, the cost of a local month up to the interval end ``t`` is

    C(t) = B(usage with every interval after ``t`` set to 0) - B(no usage) x (days not begun by ``t``) / (days)

where B is the month's bill of the meters by :func:`rating.rate_block` with the tariff version in force for the
month, without the minimum charge (a monthly true-up that the bill settles). B(no usage) is the fixed charges with
their taxes: they accrue by local day, the first interval of a day draws that day's share. Tier bounds are the
month's, counted from its first interval, so a tier is reached on the day the monthly bill would reach it. An update
that charges the intervals (t0, t1] draws ``C(t1) - C(t0)``, split at month boundaries. The draws telescope: over a
month the account pays exactly the month's bill of its usage (less the minimum adjustment), to the cent, in the
engine's integer minor units; the only rounding is the daily share of the fixed charges, and it vanishes at the
month's end. Missing intervals count 0 (VEE and the bill settle them).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import psycopg

from amiflow.db.reader import read_intervals
from amiflow.errors import RatingError
from rating import CompiledTariff, build_axis, compile_tariff, rate_block, select_version
from rating.tariff_store import tariff_versions

__all__ = ["month_to_date_minor", "tariff_cost"]

IMPORT_OBIS = "1-0:1.29.0"
EXPORT_OBIS = "1-0:2.29.0"
F64 = npt.NDArray[np.float64]


def _next_month(d: date) -> date:
    return date(d.year + (d.month == 12), d.month % 12 + 1, 1)


def _local_midnight(d: date, zone: ZoneInfo) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=zone).astimezone(UTC)


def month_to_date_minor(
    tariff: CompiledTariff,
    ts: npt.NDArray[np.int64],
    import_wh: F64,
    export_wh: F64 | None,
    *,
    tz: str,
    month: date,
    upto_ts: int,
) -> int:
    """C(t) of the module docstring, in minor units, for the meters (rows) of one tariff over the local month
    ``month`` (``ts`` every interval end of it) up to the interval end ``upto_ts``."""
    end = _next_month(month)
    zone = ZoneInfo(tz)
    if upto_ts <= int(_local_midnight(month, zone).timestamp()):
        return 0
    axis = build_axis(tariff, ts, tz)
    later = ts > upto_ts
    imp = np.where(later[None, :], 0.0, import_wh)
    exp = None if export_wh is None else np.where(later[None, :], 0.0, export_wh)
    no_minimum = dataclasses.replace(tariff, minimum=None)
    bill = rate_block(no_minimum, ts, imp, exp, tz=tz, period_start=month, period_end=end, nan="zero", axis=axis)
    total = int(np.sum(bill.total_minor))
    if tariff.fixed:
        days = (end - month).days
        last_day = datetime.fromtimestamp(upto_ts - 1, UTC).astimezone(zone).date()
        not_begun = days - min((last_day - month).days + 1, days)
        fixed = rate_block(no_minimum, ts, np.zeros_like(imp), tz=tz, period_start=month, period_end=end, axis=axis)
        total -= (2 * int(np.sum(fixed.total_minor)) * not_begun + days) // (2 * days)  # half up
    return total


@functools.lru_cache(maxsize=64)
def _compiled(body_json: str) -> CompiledTariff:
    from rating import TariffSpec

    return compile_tariff(TariffSpec.model_validate_json(body_json))


def _tariff_for(conn: psycopg.Connection[Any], tariff_id: str, month: date) -> CompiledTariff:
    versions = tariff_versions(conn, tariff_id)
    if not versions:
        raise RatingError(f"tariff {tariff_id} is not stored (amiflow tariffs import)")
    spec = select_version(versions, month, _next_month(month))
    return _compiled(spec.model_dump_json())


def tariff_cost(
    conn: psycopg.Connection[Any],
    tariff_id: str,
    tz: str,
    meters: Sequence[str],
    since: datetime,
    upto: datetime,
    *,
    currency: str,
    interval_s: int = 900,
) -> Decimal:
    """What the intervals (since, upto] of ``meters`` (one tariff, one time zone) cost: the sum over the local
    months they touch of C(upto) - C(since). RatingError when the tariff cannot rate a month or bills in another
    currency than the account's."""
    zone = ZoneInfo(tz)
    month = since.astimezone(zone).date().replace(day=1)
    t0, t1 = int(since.timestamp()), int(upto.timestamp())
    total = Decimal(0)
    while t0 < t1:
        start, end = _local_midnight(month, zone), _local_midnight(_next_month(month), zone)
        tariff = _tariff_for(conn, tariff_id, month)
        if tariff.spec.currency != currency:
            raise RatingError(f"tariff {tariff_id} bills in {tariff.spec.currency}, the account is kept in {currency}")
        imp = read_intervals(conn, list(meters), IMPORT_OBIS, start, end, interval_s)
        exp = None
        if tariff.export_mode != "none":
            exp = read_intervals(conn, list(meters), EXPORT_OBIS, start, end, interval_s).values
        cost = functools.partial(month_to_date_minor, tariff, imp.ts, imp.values, exp, tz=tz, month=month)
        drawn = cost(upto_ts=min(t1, int(end.timestamp()))) - cost(upto_ts=t0)
        total += Decimal(drawn).scaleb(-tariff.minor_units)
        t0, month = int(end.timestamp()), _next_month(month)
    return total
