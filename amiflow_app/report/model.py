"""The report's data: what :mod:`.gather` reads from the database and :mod:`.document` and :mod:`.figures` show."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg

from amiflow.errors import ConfigError

__all__ = ["PUSH_PROTOCOLS", "AccountStory", "ReportData", "exists", "money", "period_bounds"]

#: Protocols whose meters push their readings: "polls" do not apply to them (the report says n/a).
PUSH_PROTOCOLS = frozenset({"mqtt", "p1", "sml"})


@dataclass(slots=True)
class AccountStory:
    """One account through the period: its bill, notices, policy decisions, relay commands and payments."""

    account: str
    meter: str | None = None
    bill: dict[str, Any] | None = None
    events: list[tuple[datetime, str]] = field(default_factory=list)  # (when, what), sorted


@dataclass(slots=True)
class ReportData:
    period: str
    generated_at: str
    protocols: list[tuple[str, int, int | None, int | None]] = field(default_factory=list)  # name, meters, polls, ok
    gaps: list[tuple[str, int, int]] = field(default_factory=list)  # meter, present, expected
    quarantine: list[tuple[str, int]] = field(default_factory=list)
    completeness: dict[str, float] = field(default_factory=dict)  # protocol -> intervals present / expected
    meter: str | None = None
    curve: list[tuple[datetime, float, list[str]]] = field(default_factory=list)
    story: AccountStory | None = None
    bill: dict[str, Any] | None = None  # the bill shown: the story account's, else the largest of the period
    #: The figures, machine-readable under summary.json's names (the demo's test compares the two).
    figures: dict[str, Any] = field(default_factory=dict)
    decisions: list[tuple[str, str, int]] = field(default_factory=list)  # rule, outcome (allowed|blocked|not yet), n
    #: the story meter's usage insights and best-tariff comparison (billing_bridge.customer), or why there are none
    insights: Any = None
    insights_note: str = ""


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """The UTC bounds [start, end) of a ``YYYY-MM`` period."""
    try:
        year, month = (int(x) for x in period.split("-"))
        start = datetime(year, month, 1, tzinfo=UTC)
    except ValueError:
        raise ConfigError(f"--period {period!r}: expected YYYY-MM, e.g. 2026-11") from None
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def exists(conn: psycopg.Connection[Any], name: str) -> bool:
    """Whether the table or view exists (a report works on a database of any migration level)."""
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone() == (True,)


def money(amount: object, currency: object) -> str:
    """``1234.5, "USD"`` -> ``"1,234.50 USD"``: two decimals, thousands separated, the currency named."""
    if amount is None or amount == "":
        return "n/a"
    value = Decimal(str(amount)).quantize(Decimal("0.01"))
    return f"{value:,} {currency or ''}".rstrip()
