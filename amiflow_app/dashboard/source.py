"""All the dashboard's figures at once, from one consistent snapshot of the database."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from psycopg_pool import ConnectionPool

from amiflow_app.dashboard.arrears import ArrearsCache
from amiflow_app.dashboard.model import Figures
from amiflow_app.dashboard.operations import (
    FigureOptions,
    bills_figure,
    disconnects_figure,
    payments_figure,
    quarantine_figure,
    readings_figure,
    silent_figure,
)
from billing_bridge.policy.model import RuleSet

__all__ = ["FigureSource"]


class FigureSource:
    """Gathers :class:`Figures` from ``pool`` (autocommit connections). "Today" is the local day of the rule set's
    time zone, the day the collections job and the arrears use."""

    def __init__(self, pool: ConnectionPool[Any], ruleset: RuleSet, options: FigureOptions | None = None) -> None:
        self._pool = pool
        self._tz = ZoneInfo(ruleset.timezone)
        self._options = options or FigureOptions()
        self._arrears = ArrearsCache(ruleset)

    def gather(self) -> Figures:
        """The figures now (blocking: run it in a thread from async code)."""
        now = datetime.now(UTC)
        today = now.astimezone(self._tz).date()
        midnight = datetime.combine(today, time(0), self._tz)
        opts = self._options
        with self._pool.connection() as conn, conn.transaction():
            # one snapshot for every figure, so they agree with each other (a payment is in both or in neither)
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            arrears = self._arrears.get(conn, today)
            return Figures(
                at=now,
                readings=readings_figure(conn, opts),
                quarantine=quarantine_figure(conn),
                silent=silent_figure(conn, opts),
                bills=bills_figure(conn, midnight),
                payments=payments_figure(conn, midnight),
                arrears=arrears.figure,
                disconnects=disconnects_figure(conn, opts, arrears.overdue),
            )
