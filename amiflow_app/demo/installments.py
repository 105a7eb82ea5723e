"""The installment plans of ``amiflow demo``.

Four days after the bills fall due, two owing accounts get a plan: one keeps it (the down payment that day, the rest
two days later: the plan is completed), one breaks it (the down payment, then nothing: its first installment, a
week later, is still unpaid after the grace period, so the plan breaks, billing is told and the reminder ladder
resumes; the account pays its balance the day after). :class:`PlanStory` takes one step per simulated day, before
that day's reminders.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from amiflow_app.demo.plan import DemoPlan, Summary
from amiflow_app.demo.steps import day_at, scalar

__all__ = ["BROKEN", "KEPT", "PlanStory"]

KEPT, BROKEN = "ACC-000003", "ACC-000004"

Pay = Callable[[psycopg.Connection[Any], str, Decimal, Any, str], None]


class PlanStory:
    """Two accounts, one plan kept and one broken (see the module docstring)."""

    def __init__(self, plan: DemoPlan, summary: Summary, pay: Pay, terms_days: int) -> None:
        self.created = plan.period_end + timedelta(days=terms_days + 4)
        self.summary = summary
        self._pay = pay
        self._tag = plan.period_text
        self._plans: dict[str, int] = {}

    @property
    def accounts(self) -> set[str]:
        """The accounts the story needs unpaid until it pays for them."""
        return {KEPT, BROKEN}

    def _owed(self, conn: psycopg.Connection[Any], account: str) -> Decimal:
        billed = scalar(conn, "SELECT sum(total) FROM amiflow.v_bills WHERE account = %s AND status = 'issued'",
                        (account,))  # fmt: skip
        paid = scalar(conn, "SELECT sum(amount) FROM amiflow.payments WHERE account = %s", (account,))
        return Decimal(billed or 0) - Decimal(paid or 0)

    def _payment(self, conn: psycopg.Connection[Any], account: str, amount: Decimal, day: date, ref: str) -> None:
        self._pay(conn, account, amount, day_at(day, 14), f"{self._tag}-{ref}")
        self.summary.payments += 1

    def on_day(self, conn: psycopg.Connection[Any], day: date, ruleset: Any) -> None:
        """The story's step on ``day`` (before that day's reminders at 15:00 UTC)."""
        from billing_bridge.plans import PlanRefused, create_plan, get_plan, load_plan_terms

        if day == self.created:
            terms = load_plan_terms(ruleset.id)
            for account, n, start in ((KEPT, 3, None), (BROKEN, 2, day + timedelta(days=7))):
                try:
                    made = create_plan(conn, ruleset, terms, account=account, installments=n, first_due=start,
                                       now=day_at(day, 13))  # fmt: skip
                except PlanRefused as exc:
                    self.summary.not_built.append(f"installment plan of {account}: {exc}")
                    continue
                self._plans[account] = made.id
                self._payment(conn, account, made.down_payment, day, "down")
        if day == self.created + timedelta(days=2) and KEPT in self._plans:
            self._payment(conn, KEPT, self._owed(conn, KEPT), day, "rest")
        broken = self._plans.get(BROKEN)
        if broken is not None and day > self.created + timedelta(days=7):
            plan = get_plan(conn, broken)
            if plan is not None and plan.state == "broken" and plan.ended_at and plan.ended_at.date() < day:
                self._payment(conn, BROKEN, self._owed(conn, BROKEN), day, "after-break")
                self._plans.pop(BROKEN)

    def count(self, conn: psycopg.Connection[Any]) -> None:
        """The summary's ``installment_plans`` {created, kept, broken} as the database holds them."""
        rows = dict(conn.execute("SELECT state, count(*) FROM amiflow.installment_plans GROUP BY 1").fetchall())
        self.summary.installment_plans = {
            "created": int(sum(rows.values())), "kept": int(rows.get("completed", 0)),
            "broken": int(rows.get("broken", 0)),
        }  # fmt: skip
