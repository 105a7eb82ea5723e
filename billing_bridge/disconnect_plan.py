"""Disconnect planning: which meters to switch, decided by the policy and recorded before anything is sent.

1. :func:`plan_disconnects` evaluates every overdue account (and every prepaid account at zero) against the policy
   (:mod:`billing_bridge.policy`), records each decision, allowed or blocked, in ``amiflow.disconnect_decisions``
   and, when asked to issue, creates a ``disconnect`` command for each active meter of an allowed account in the same
   transaction (:func:`billing_bridge.meter_commands.issue_command`). A debt that is due for disconnection but blocked
   by a protection, calendar, weather, bill-quality or rate rule sends one ``disconnect_blocked`` notice per debt and
   set of blocking rules.
2. :func:`schedule_reconnects` creates a ``reconnect`` command, due within ``reconnect_within_s``, for each meter
   disconnected by amiflow whose account no longer has arrears (or whose prepaid balance is positive again).

:mod:`billing_bridge.command_run` then sends the commands to the meters.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Jsonb

from amiflow.db.outbox import enqueue
from billing_bridge.meter_commands import issue_command
from billing_bridge.policy import (
    NOT_YET_RULES,
    Conditions,
    Decision,
    DisconnectCase,
    RuleSet,
    evaluate,
    holidays_for,
)
from billing_bridge.prepaid import prepaid_positions
from billing_bridge.reminders import disconnect_cases, score_accounts

__all__ = ["PlanItem", "plan_disconnects", "schedule_reconnects"]


@dataclass(frozen=True, slots=True)
class PlanItem:
    """One evaluated account/meter: the recorded decision's id and the decision; ``command_id`` when issued."""

    account: str
    meter: str
    decision_id: int
    decision: Decision
    case: DisconnectCase
    command_id: uuid.UUID | None = None


def _recent_disconnects(conn: psycopg.Connection[Any], now: datetime) -> tuple[int, dict[str | None, int]]:
    rows = conn.execute(
        "SELECT m.feeder, count(*) FROM amiflow.meter_commands c LEFT JOIN amiflow.meters m ON m.name = c.meter"
        " WHERE c.action = 'disconnect' AND c.created_at > %s AND c.state <> 'failed' GROUP BY m.feeder",
        (now - timedelta(hours=1),),
    ).fetchall()
    per_feeder = {f: int(n) for f, n in rows}
    return sum(per_feeder.values()), per_feeder


def _disconnected_meters(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """Meter -> state of its latest command when that is a disconnect not failed (already handled)."""
    rows = conn.execute(
        "SELECT DISTINCT ON (meter) meter, action, state FROM amiflow.meter_commands ORDER BY meter, created_at DESC"
    ).fetchall()
    return {m: s for m, a, s in rows if a == "disconnect" and s != "failed"}


def _account_meters(conn: psycopg.Connection[Any]) -> dict[str, list[tuple[str, str | None]]]:
    out: dict[str, list[tuple[str, str | None]]] = {}
    for name, account, feeder in conn.execute(
        "SELECT name, account, feeder FROM amiflow.meters WHERE account IS NOT NULL AND status = 'active' ORDER BY name"
    ).fetchall():
        out.setdefault(account, []).append((name, feeder))
    return out


def _inputs(case: DisconnectCase, cond: Conditions) -> dict[str, Any]:
    return {
        "overdue_amount": str(case.overdue_amount),
        "days_past_due": case.days_past_due,
        "notices_sent": {t: at.isoformat() for t, at in case.notices_sent.items()},
        "protected": sorted(case.protected),
        "open_dispute": case.open_dispute,
        "payment_plan": case.payment_plan,
        "estimated_share": case.estimated_share,
        "feeder": case.feeder,
        "prepaid": case.prepaid,
        "now": cond.now.isoformat(),
        "forecast_min_c": cond.forecast_min_c,
        "forecast_max_c": cond.forecast_max_c,
        "disconnects_last_hour": cond.disconnects_last_hour,
        "feeder_disconnects_last_hour": cond.feeder_disconnects_last_hour,
    }


def plan_disconnects(
    conn: psycopg.Connection[Any],
    ruleset: RuleSet,
    *,
    now: datetime,
    forecast_c: tuple[float, float] | None,
    issue: bool = False,
) -> list[PlanItem]:
    """Evaluate, record every decision, and (``issue``) create the disconnect commands of the allowed ones.

    ``forecast_c`` is the (minimum, maximum) forecast temperature for the next 24 hours, or None when unknown.
    """
    local_year = now.astimezone(ZoneInfo(ruleset.timezone)).year
    holidays = holidays_for(ruleset, (local_year, local_year + 1))
    total, per_feeder = _recent_disconnects(conn, now)
    handled = _disconnected_meters(conn)
    meters = _account_meters(conn)
    out = []
    for base in disconnect_cases(conn, ruleset, now):
        for meter, feeder in meters.get(base.account, []):
            if meter in handled:
                continue
            case = dataclasses.replace(base, meter=meter, feeder=feeder)
            cond = Conditions(
                now=now,
                forecast_min_c=forecast_c[0] if forecast_c else None,
                forecast_max_c=forecast_c[1] if forecast_c else None,
                holidays=holidays,
                disconnects_last_hour=total,
                feeder_disconnects_last_hour=per_feeder.get(feeder, 0),
            )
            decision = evaluate(ruleset, case, cond)
            item = _record(conn, ruleset, case, cond, decision, issue=issue)
            if issue and decision.allowed:
                total += 1
                per_feeder[feeder] = per_feeder.get(feeder, 0) + 1
            out.append(item)
    return out


def _record(
    conn: psycopg.Connection[Any], rs: RuleSet, case: DisconnectCase, cond: Conditions, d: Decision, *, issue: bool
) -> PlanItem:
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO amiflow.disconnect_decisions (decided_at, account, meter, debt_ref, ruleset_id,"
            " ruleset_version, allowed, deciding_rules, results, inputs) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
            " RETURNING id",
            (
                cond.now,
                case.account,
                case.meter,
                case.debt_ref,
                d.ruleset_id,
                d.ruleset_version,
                d.allowed,
                list(d.deciding_rules),
                Jsonb(d.as_json()),
                Jsonb(_inputs(case, cond)),
            ),
        ).fetchone()
        assert row is not None
        decision_id = int(row[0])
        command_id = None
        if issue and d.allowed and case.meter is not None:
            command_id = issue_command(
                conn, case.meter, "disconnect", account=case.account, decision_id=decision_id, now=cond.now
            )
        blocking = set(d.blocking)
        if blocking and not (blocking & NOT_YET_RULES):
            rules = "+".join(sorted(blocking))
            payload = {
                "type": "disconnect_blocked",
                "account": case.account,
                "meter": case.meter,
                "debt_ref": case.debt_ref,
                "rules": sorted(blocking),
                "rule": sorted(blocking)[0],
                "detail": [r.detail for r in d.results if r.blocks],
                "ruleset": {"id": d.ruleset_id, "version": d.ruleset_version},
                "decided_at": cond.now.isoformat(),
                "decision_id": decision_id,
            }
            key = f"notice:disconnect_blocked:{case.account}:{case.meter}:{case.debt_ref}:{rules}"
            if not conn.execute("SELECT 1 FROM amiflow.outbox WHERE idempotency_key = %s", (key,)).fetchone():
                enqueue(conn, kind="notice", idempotency_key=key, payload=payload, account=case.account)
    return PlanItem(case.account, case.meter or "", decision_id, d, case, command_id)


def schedule_reconnects(
    conn: psycopg.Connection[Any], ruleset: RuleSet, *, now: datetime, within_s: int
) -> list[uuid.UUID]:
    """A reconnect for each meter amiflow disconnected whose account has no arrears left (prepaid: credit again)."""
    today = now.astimezone(ZoneInfo(ruleset.timezone)).date()
    arrears, _ = score_accounts(conn, ruleset, today)
    prepaid = {p.account: p.balance for p in prepaid_positions(conn)}
    rows = conn.execute(
        "SELECT DISTINCT ON (meter) meter, account, action, state FROM amiflow.meter_commands"
        " ORDER BY meter, created_at DESC"
    ).fetchall()
    out = []
    for meter, account, action, state in rows:
        if action != "disconnect" or state != "confirmed":
            continue
        if account in prepaid:
            cleared = prepaid[account] > 0
        else:
            a = arrears.get(account)
            cleared = a is None or a.overdue_amount <= Decimal(0)
        if cleared:
            with conn.transaction():
                out.append(
                    issue_command(
                        conn, meter, "reconnect", account=account, now=now, due_by=now + timedelta(seconds=within_s)
                    )
                )
    return out
