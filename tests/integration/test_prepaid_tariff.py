"""Prepaid accounts draw down by the rating engine: TOU periods and tiers of the meter's tariff, fixed charges by day
and taxes, so that a month of updates cut at any points adds up to the month's bill of the same usage (less the
minimum adjustment); low-balance notices and the zero-credit disconnect still go through the policy."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import psycopg

import rating
from amiflow.db.registry import MeterRecord, add_meter
from amiflow.db.writer import BatchWriter
from amiflow.types import ReadingBatch
from billing_bridge import plan_disconnects
from billing_bridge.policy import load_ruleset
from billing_bridge.prepaid import enroll, prepaid_positions, update_prepaid
from rating import build_axis, compile_tariff, load_tariff, rate_block
from rating.tariff_store import store_tariff

US = load_ruleset("us_tx")
LA = "America/Los_Angeles"
TARIFF = Path(rating.__file__).resolve().parent / "tariffs" / "residential_tou_tiers.toml"
START = datetime(2026, 3, 1, tzinfo=ZoneInfo(LA)).astimezone(UTC)
END = datetime(2026, 4, 1, tzinfo=ZoneInfo(LA)).astimezone(UTC)


def _setup(conn: psycopg.Connection[Any], account: str, credit: str, meters: int = 1) -> list[str]:
    (spec,) = load_tariff(TARIFF)
    store_tariff(conn, spec)
    names = [f"{account}-M{i}" for i in range(meters)]
    ts = np.arange(int(START.timestamp()) + 900, int(END.timestamp()) + 1, 900, dtype=np.int64)
    rng = np.random.default_rng(7)
    for name in names:
        add_meter(conn, MeterRecord(name=name, protocol="mqtt", account=account, tariff="res-tou-tiers", timezone=LA))
        wh = np.round(rng.uniform(200.0, 1800.0, ts.size))
        BatchWriter(conn).write(ReadingBatch.from_columns(name, "1-0:1.29.0", ts, wh, unit="Wh"))
    enroll(conn, account, currency="USD", rate_per_kwh=Decimal("0"), opening_credit=Decimal(credit), start=START)
    return names


def _month_bill(conn: psycopg.Connection[Any], names: list[str]) -> Decimal:
    """The month's bill of the same usage by the engine directly, without the minimum adjustment."""
    from amiflow.db.reader import read_intervals

    (spec,) = load_tariff(TARIFF)
    tariff = dataclasses.replace(compile_tariff(spec), minimum=None)
    m = read_intervals(conn, names, "1-0:1.29.0", START, END, 900)
    block = rate_block(tariff, m.ts, m.values, tz=LA, period_start=date(2026, 3, 1), period_end=date(2026, 4, 1),
                       axis=build_axis(tariff, m.ts, LA))  # fmt: skip
    return Decimal(int(block.total_minor.sum())).scaleb(-2)


def test_a_month_of_draws_adds_up_to_the_months_bill(db_conn: psycopg.Connection[Any]) -> None:
    names = _setup(db_conn, "PRE-T", "5000.00", meters=2)
    cuts = [START + timedelta(hours=h) for h in (7, 30, 31, 100, 101, 200, 333, 500, 744)] + [END + timedelta(days=1)]
    costs = [u.cost for now in cuts for u in update_prepaid(db_conn, US, now=now)]
    assert all(c >= 0 for c in costs) and sum(1 for c in costs if c > 0) >= 8
    bill = _month_bill(db_conn, names)
    assert sum(costs, Decimal(0)) == bill  # the draws telescope to the bill, to the cent
    (pos,) = prepaid_positions(db_conn)
    assert pos.balance == Decimal("5000.00") - bill and pos.consumed_through == END


def test_the_tariff_prices_peak_hours_and_tiers_not_a_flat_rate() -> None:
    from billing_bridge.prepaid_rating import month_to_date_minor

    (spec,) = load_tariff(TARIFF)
    # energy lines only, tiers allocated in time order: one hour's draw is 4 kWh at the rate of its period and tier
    tariff = dataclasses.replace(compile_tariff(spec), fixed=(), taxes=(), allocation="chronological")
    ts = np.arange(int(START.timestamp()) + 900, int(END.timestamp()) + 1, 900, dtype=np.int64)
    usage = np.full((1, ts.size), 1000.0)  # 1 kWh per quarter hour = 96 kWh a day: past 300 kWh on day 4

    def cost(day: int, hour: int) -> int:
        a, b = (int(datetime(2026, 3, day, h, tzinfo=ZoneInfo(LA)).timestamp()) for h in (hour, hour + 1))
        month = date(2026, 3, 1)
        c0, c1 = (month_to_date_minor(tariff, ts, usage, None, tz=LA, month=month, upto_ts=t) for t in (a, b))
        return c1 - c0

    # each C(t) is rounded to the cent, so an hour's draw is the exact amount give or take a cent
    expected = {(2, 17): "1.64936", (2, 10): "1.19484", (10, 17): "1.96936", (10, 10): "1.51484"}
    for (day, hour), amount in expected.items():  # Monday 2 March (tier 1), Tuesday 10 March (tier 2)
        assert abs(cost(day, hour) - Decimal(amount) * 100) <= 1, (day, hour)


def test_low_credit_notices_and_the_zero_credit_disconnect_pass_the_policy(db_conn: psycopg.Connection[Any]) -> None:
    _setup(db_conn, "PRE-Z", "12.00")
    (u,) = update_prepaid(db_conn, US, now=START + timedelta(hours=30))
    assert u.error is None and u.balance < 0 and u.notices == ("10.00", "5.00")
    (pos,) = prepaid_positions(db_conn)
    assert pos.zero_since == START + timedelta(hours=30)  # found at zero when charged through then
    # Tuesday 3 March, 10:00 in Chicago (the rule set's zone): the balance has been at zero for more than 24 h
    (item,) = plan_disconnects(db_conn, US, now=datetime(2026, 3, 3, 16, tzinfo=UTC), forecast_c=(4.0, 15.0))
    assert item.case.prepaid and item.decision.allowed, item.decision.blocking


def test_a_tariff_that_cannot_rate_leaves_the_account_uncharged_with_the_reason(
    db_conn: psycopg.Connection[Any],
) -> None:
    _setup(db_conn, "PRE-E", "50.00")
    db_conn.execute("UPDATE amiflow.meters SET tariff = 'not-stored'")
    (u,) = update_prepaid(db_conn, US, now=START + timedelta(hours=6))
    assert u.intervals_charged == 0 and u.cost == 0 and "not-stored" in (u.error or "")
    (pos,) = prepaid_positions(db_conn)
    assert pos.balance == Decimal("50.00") and pos.consumed_through == START
