"""The daily review of the running installment plans: a plan whose every item is paid is completed (kept); a plan
with an item (or a required current bill) unpaid past the grace period is broken, billing gets an
``installment_plan_broken`` notice with the missed items, and the account's reminder ladder resumes from where it
stopped (its next rung goes out in the same reminder run). Idempotent: a plan changes state once.

:func:`billing_bridge.reminders.send_reminders` runs it before it sends the day's rungs, so ``disconnect plan|run``,
``amiflow serve``'s collections job and the demo review plans without a step of their own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from billing_bridge.plans.schedule import ItemStatus
from billing_bridge.plans.store import list_plans, plan_standing, record_event
from billing_bridge.policy import RuleSet

__all__ = ["PlanChange", "review_plans"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PlanChange:
    """A plan that changed state in a review: ``state`` completed or broken."""

    plan_id: int
    account: str
    state: str


def _item(i: ItemStatus) -> dict[str, Any]:
    return {"kind": i.kind, "ref": i.ref, "due_date": i.due_date.isoformat(), "amount": str(i.amount),
            "paid": str(i.paid)}  # fmt: skip


def review_plans(conn: psycopg.Connection[Any], ruleset: RuleSet, *, now: datetime) -> list[PlanChange]:
    """Complete or break the active plans as their standing on ``now``'s local day says; returns the changes."""
    if conn.execute("SELECT to_regclass('amiflow.installment_plans')").fetchone() in (None, (None,)):
        return []
    today = now.astimezone(ZoneInfo(ruleset.timezone)).date()
    changes = []
    for plan in list_plans(conn, state="active"):
        s = plan_standing(conn, ruleset, plan, today)
        if s.state == "good_standing":
            continue
        event = "completed" if s.state == "completed" else "broken"
        detail: dict[str, Any] = {"paid_to_plan": str(s.paid_to_plan)}
        if event == "broken":
            detail |= {"missed": [_item(i) for i in s.missed], "remaining": str(s.remaining),
                       "broken_on": s.broken_on.isoformat() if s.broken_on else None}  # fmt: skip
        with conn.transaction():
            done = conn.execute(
                "UPDATE amiflow.installment_plans SET state = %s, ended_at = %s WHERE id = %s AND state = 'active'"
                " RETURNING id",
                (event, now, plan.id),
            ).fetchone()
            if done is None:  # another review got there first
                continue
            record_event(conn, plan, event, detail, now)
        log.info("installment plan %s of account %s %s", plan.id, plan.account, event)
        changes.append(PlanChange(plan.id, plan.account, event))
    return changes
