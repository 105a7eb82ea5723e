"""Collection KPIs per group of accounts, by region or by assigned collector (``amiflow.accounts``), for a month.

The month is local to the rule set's time zone. Per group and currency (an account counts in its own currency):

| KPI | definition |
|---|---|
| billed | total of the bills issued in the month (``v_bills``; a bill is issued the day after its period ends) |
| collected | payments received in the month (a reversal counts negative) |
| collection_rate | collected / billed (none when nothing was billed) |
| arrears 0-30, 31-60, 61-90, >90 | what is overdue on the month's last day, by days past due (a) |
| plans_created / plans_kept / plans_broken | installment plans made / completed / broken in the month |
| plans_active | plans running at the end of the month |
| reminders_sent | reminder ladder rungs (the rule set's ladder types) sent in the month |
| disconnects / reconnects | relay commands of the month that the meter confirmed |
| dso_days | days sales outstanding: receivables (everything open, due or not) / billed x days of the month |

(a) point in time at the end of that day, as the reminders see it (:func:`billing_bridge.arrears.load_book`,
:mod:`billing_bridge.aging`): the bills issued by then count, payments and statements after it do not.
Accounts without a region (collector) form the group ``(unassigned)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

import psycopg

from billing_bridge.aging import AGE_BANDS, age_bands, open_debts
from billing_bridge.arrears import load_book
from billing_bridge.policy import RuleSet

__all__ = [
    "GROUPINGS",
    "KPI_NAMES",
    "UNASSIGNED",
    "GroupKpis",
    "collection_kpis",
    "kpi_history",
    "month_starts",
    "totals",
]

GROUPINGS = ("region", "collector")
UNASSIGNED = "(unassigned)"
_ZERO = Decimal(0)
_CENT = Decimal("0.01")
Grouping = Literal["region", "collector"]


@dataclass(frozen=True, slots=True)
class GroupKpis:
    """The KPIs of one group and currency for one month (see the module docstring)."""

    group: str
    currency: str
    accounts: int = 0
    billed: Decimal = _ZERO
    collected: Decimal = _ZERO
    arrears_0_30: Decimal = _ZERO
    arrears_31_60: Decimal = _ZERO
    arrears_61_90: Decimal = _ZERO
    arrears_over_90: Decimal = _ZERO
    receivables: Decimal = _ZERO
    plans_created: int = 0
    plans_active: int = 0
    plans_kept: int = 0
    plans_broken: int = 0
    reminders_sent: int = 0
    disconnects: int = 0
    reconnects: int = 0
    days: int = 30

    @property
    def collection_rate(self) -> Decimal | None:
        """Collected / billed, to four places (0.9512 = 95.12 %)."""
        return (self.collected / self.billed).quantize(Decimal("0.0001")) if self.billed else None

    @property
    def dso_days(self) -> Decimal | None:
        """Receivables / billed x days of the month, to a tenth of a day."""
        return (self.receivables / self.billed * self.days).quantize(Decimal("0.1")) if self.billed else None

    def as_json(self, by: str) -> dict[str, Any]:
        """One row of ``summary.json``'s ``collection_by_region`` / ``collection_by_collector`` (money as strings)."""
        out: dict[str, Any] = {by: self.group}
        for f in fields(self):
            if f.name not in ("group", "days"):
                value = getattr(self, f.name)
                out[f.name] = str(value.quantize(_CENT)) if isinstance(value, Decimal) else value
        rate, dso = self.collection_rate, self.dso_days
        out["collection_rate"] = None if rate is None else str(rate)
        out["dso_days"] = None if dso is None else str(dso)
        return out


#: The KPI columns of the reports, in order (attributes or properties of GroupKpis).
KPI_NAMES = (
    "billed", "collected", "collection_rate", "arrears_0_30", "arrears_31_60", "arrears_61_90", "arrears_over_90",
    "plans_active", "plans_kept", "plans_broken", "reminders_sent", "disconnects", "reconnects", "dso_days",
)  # fmt: skip
_BANDS = ("arrears_0_30", "arrears_31_60", "arrears_61_90", "arrears_over_90")
assert len(_BANDS) == len(AGE_BANDS)


def month_starts(period: date, months: int) -> list[date]:
    """The first days of the ``months`` months ending with ``period``'s, oldest first."""
    index = period.year * 12 + period.month - 1
    return [date((index - k) // 12, (index - k) % 12 + 1, 1) for k in range(months - 1, -1, -1)]


def _bounds(period: date, tz: str) -> tuple[datetime, datetime, date]:
    zone = ZoneInfo(tz)
    nxt = date(period.year + (period.month == 12), period.month % 12 + 1, 1)
    start = datetime(period.year, period.month, 1, tzinfo=zone).astimezone(UTC)
    return start, datetime(nxt.year, nxt.month, 1, tzinfo=zone).astimezone(UTC), nxt


def _accounts(conn: psycopg.Connection[Any], rs: RuleSet, by: Grouping) -> dict[str, tuple[str, str]]:
    """Account -> (group, currency) for every account amiflow knows of."""
    rows = conn.execute(
        f"SELECT x.account, a.{by}, coalesce(a.currency, (SELECT b.currency FROM amiflow.v_bills b"
        " WHERE b.account = x.account ORDER BY b.period_end DESC LIMIT 1))"
        " FROM (SELECT account FROM amiflow.meters WHERE account IS NOT NULL UNION SELECT account FROM amiflow.accounts"
        " UNION SELECT account FROM amiflow.v_bills WHERE account IS NOT NULL) x"
        " LEFT JOIN amiflow.accounts a ON a.account = x.account"
    ).fetchall()
    return {a: (g or UNASSIGNED, str(c).strip() if c else rs.currency) for a, g, c in rows}


def _sums(conn: psycopg.Connection[Any], sql: str, params: tuple[Any, ...]) -> dict[str, Any]:
    return {str(a): v for a, v in conn.execute(sql, params).fetchall()}


def _account_figures(
    conn: psycopg.Connection[Any], rs: RuleSet, start: datetime, end: datetime, after: date
) -> dict[str, dict[str, Any]]:
    """Per account, each raw KPI of the month [start, end) (``after`` is the first day after it)."""
    first = start.astimezone(ZoneInfo(rs.timezone)).date()
    last = after - timedelta(days=1)
    out: dict[str, dict[str, Any]] = {}

    def put(name: str, values: dict[str, Any]) -> None:
        for account, v in values.items():
            out.setdefault(account, {})[name] = v

    put("billed", _sums(conn, "SELECT account, sum(total) FROM amiflow.v_bills WHERE status = 'issued'"
                        " AND account IS NOT NULL AND period_end >= %s AND period_end < %s GROUP BY 1",
                        (first - timedelta(days=1), last)))  # fmt: skip
    put("collected", _sums(conn, "SELECT account, sum(amount) FROM amiflow.payments WHERE paid_at >= %s"
                           " AND paid_at < %s GROUP BY 1", (start, end)))  # fmt: skip
    ladder = [r.type for r in rs.ladder]
    put("reminders_sent", _sums(conn, "SELECT account, count(*) FROM amiflow.notices WHERE type = ANY(%s)"
                                " AND sent_at >= %s AND sent_at < %s GROUP BY 1", (ladder, start, end)))  # fmt: skip
    for action, name in (("disconnect", "disconnects"), ("reconnect", "reconnects")):
        put(name, _sums(conn, "SELECT account, count(*) FROM amiflow.meter_commands WHERE action = %s AND"
                        " state = 'confirmed' AND account IS NOT NULL AND created_at >= %s AND created_at < %s"
                        " GROUP BY 1", (action, start, end)))  # fmt: skip
    plan_counts = {
        "plans_created": "created_at >= %(s)s AND created_at < %(e)s",
        "plans_active": "created_at < %(e)s AND (ended_at IS NULL OR ended_at >= %(e)s)",
        "plans_kept": "state = 'completed' AND ended_at >= %(s)s AND ended_at < %(e)s",
        "plans_broken": "state = 'broken' AND ended_at >= %(s)s AND ended_at < %(e)s",
    }
    for name, where in plan_counts.items():
        rows = conn.execute(
            f"SELECT account, count(*) FROM amiflow.installment_plans WHERE {where} GROUP BY 1", {"s": start, "e": end}
        ).fetchall()
        put(name, {str(a): int(n) for a, n in rows})
    book = load_book(conn, today=last, terms_days=rs.payment_terms_days, tz=rs.timezone)
    for account, debts in book.debts.items():
        pays = book.payments.get(account, [])
        put_one = out.setdefault(account, {})
        put_one.update(zip(_BANDS, age_bands(debts, pays, last), strict=True))
        put_one["receivables"] = sum((left for _, left in open_debts(debts, pays)), _ZERO)
    return out


def _aggregate(figures: dict[str, dict[str, Any]], accounts: dict[str, tuple[str, str]], days: int) -> list[GroupKpis]:
    totals: dict[tuple[str, str], dict[str, Any]] = {}
    for account, (group, currency) in accounts.items():
        row = totals.setdefault((group, currency), {"accounts": 0})
        row["accounts"] += 1
        for name, value in figures.get(account, {}).items():
            row[name] = row.get(name, 0) + (Decimal(value) if isinstance(value, Decimal) else value)
    return [
        GroupKpis(group, currency, days=days, **row)
        for (group, currency), row in sorted(totals.items(), key=lambda kv: (kv[0][0] == UNASSIGNED, kv[0]))
    ]


def collection_kpis(conn: psycopg.Connection[Any], ruleset: RuleSet, period: date, by: Grouping) -> list[GroupKpis]:
    """The KPIs of the month of ``period`` per ``by`` group (unassigned last), each group and currency a row."""
    if by not in GROUPINGS:
        raise ValueError(f"group by one of {', '.join(GROUPINGS)}, not {by!r}")
    start, end, after = _bounds(period, ruleset.timezone)
    figures = _account_figures(conn, ruleset, start, end, after)
    return _aggregate(figures, _accounts(conn, ruleset, by), (after - period.replace(day=1)).days)


def kpi_history(
    conn: psycopg.Connection[Any], ruleset: RuleSet, period: date, by: Grouping, months: int = 12
) -> list[tuple[date, list[GroupKpis]]]:
    """The KPIs of the ``months`` months ending with ``period``'s, oldest first (the plots of the report)."""
    return [(m, collection_kpis(conn, ruleset, m, by)) for m in month_starts(period, months)]


def totals(rows: Iterable[GroupKpis]) -> dict[str, GroupKpis]:
    """All groups added up per currency (the report's total line)."""
    out: dict[str, dict[str, Any]] = {}
    days = 30
    for r in rows:
        acc = out.setdefault(r.currency, {})
        days = r.days
        for f in fields(r):
            if f.name not in ("group", "currency", "days"):
                acc[f.name] = acc.get(f.name, 0) + getattr(r, f.name)
    return {c: GroupKpis("total", c, days=days, **v) for c, v in out.items()}
