"""Billing and collections: the period's bills, deliveries, payments, notices and disconnect decisions, and one
account's story through them. Counted the way the demo's summary counts them (``NOT_YET_RULES`` separates a
decision that only says "not yet" from one a protection, calendar, weather or rate rule blocked)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg

from amiflow_app.report.model import AccountStory, ReportData, exists, money
from billing_bridge.policy import NOT_YET_RULES

__all__ = ["collect_billing", "collect_story"]


def collect_billing(conn: psycopg.Connection[Any], data: ReportData, start: datetime, end: datetime) -> None:
    """Bills, collection, deliveries, notices and disconnect decisions into ``data.figures`` (summary.json names)."""
    f = data.figures
    totals: dict[str, str] = {}
    if exists(conn, "amiflow.v_bills"):
        rows = conn.execute(
            "SELECT currency, count(*), sum(total) FROM amiflow.v_bills WHERE status = 'issued'"
            " AND period_start >= %s::date AND period_start < %s::date GROUP BY currency ORDER BY currency",
            (start.date(), end.date()),
        ).fetchall()
        f["bills_issued"] = sum(int(r[1]) for r in rows)
        totals = {str(r[0]): str(Decimal(r[2]).quantize(Decimal("0.01"))) for r in rows}
        f["bills_total"] = totals
    if data.story is not None and data.story.bill is not None:
        data.bill = data.story.bill
    else:
        row = conn.execute(
            "SELECT payload FROM amiflow.outbox WHERE kind = 'bill'"
            " ORDER BY (payload->>'total')::numeric DESC NULLS LAST LIMIT 1"
        ).fetchone()
        data.bill = row[0] if row else None
    if exists(conn, "amiflow.payments"):
        paid = conn.execute(
            "SELECT currency, count(*), sum(amount) FROM amiflow.payments WHERE paid_at >= %s GROUP BY currency",
            (start,),
        ).fetchall()
        f["payments"] = sum(int(r[1]) for r in paid)
        f["amount_collected"] = {str(r[0]): str(Decimal(r[2]).quantize(Decimal("0.01"))) for r in paid}
        rates = {
            cur: f"{Decimal(f['amount_collected'].get(cur, 0)) / Decimal(billed):.1%}"
            for cur, billed in totals.items()
            if Decimal(billed)
        }
        f["collection_rate"] = rates
    f["deliveries_by_kind"] = {
        str(k): int(n)
        for k, n in conn.execute(
            "SELECT kind, count(*) FROM amiflow.outbox WHERE state = 'delivered' GROUP BY kind ORDER BY kind"
        ).fetchall()
    }
    f["notices"] = {
        str(t): int(n)
        for t, n in conn.execute(
            "SELECT payload->>'type', count(*) FROM amiflow.outbox WHERE kind = 'notice' GROUP BY 1 ORDER BY 1"
        ).fetchall()
    }
    if exists(conn, "amiflow.disconnect_decisions"):
        _collect_decisions(conn, data)


def _outcome(allowed: bool, rules: list[str]) -> tuple[str, list[str]]:
    if allowed:
        return "allowed", []
    hard = [r for r in rules if r not in NOT_YET_RULES]
    return ("blocked", hard) if hard else ("not yet", list(rules))


def _collect_decisions(conn: psycopg.Connection[Any], data: ReportData) -> None:
    counts = {"allowed": 0, "blocked": 0, "not yet": 0}
    by_rule: dict[tuple[str, str], int] = {}
    for allowed, rules in conn.execute("SELECT allowed, deciding_rules FROM amiflow.disconnect_decisions"):
        outcome, shown = _outcome(bool(allowed), list(rules))
        counts[outcome] += 1
        for rule in shown or ["allowed"]:
            by_rule[(rule, outcome)] = by_rule.get((rule, outcome), 0) + 1
    data.figures["disconnects_allowed"] = counts["allowed"]
    data.figures["disconnects_blocked"] = counts["blocked"]
    data.figures["disconnects_not_yet"] = counts["not yet"]
    data.figures["blocked_by_rule"] = {r: n for (r, o), n in sorted(by_rule.items()) if o == "blocked"}
    order = {"allowed": 0, "blocked": 1, "not yet": 2}
    data.decisions = sorted(((r, o, n) for (r, o), n in by_rule.items()), key=lambda d: (order[d[1]], -d[2], d[0]))


def collect_story(conn: psycopg.Connection[Any], account: str, start: datetime, end: datetime) -> AccountStory:
    """The account's period: its bill, the notices sent, the policy's decisions (runs of the same outcome merged),
    the relay commands and the payments, in time order."""
    story = AccountStory(account)
    row = conn.execute(
        "SELECT bill_id, meter, total, currency, body FROM amiflow.bills WHERE account = %s AND status = 'issued'"
        " AND period_start >= %s::date AND period_start < %s::date ORDER BY version DESC LIMIT 1",
        (account, start.date(), end.date()),
    ).fetchone()
    if row is None:
        return story
    bill_id, story.meter, total, currency, story.bill = row
    events: list[tuple[datetime, str]] = [(end, f"bill {bill_id} issued: {money(total, currency)}")]
    if exists(conn, "amiflow.notices"):
        events += [
            (sent, f"notice sent: {kind.replace('_', ' ')}")
            for kind, sent in conn.execute(
                "SELECT type, sent_at FROM amiflow.notices WHERE account = %s ORDER BY sent_at", (account,)
            )
        ]
    if exists(conn, "amiflow.disconnect_decisions"):
        events += _decision_runs(conn, account)
    if exists(conn, "amiflow.payments"):
        events += [
            (paid, f"payment received: {money(amount, cur)}")
            for amount, cur, paid in conn.execute(
                "SELECT amount, currency, paid_at FROM amiflow.payments WHERE account = %s ORDER BY paid_at",
                (account,),
            )
        ]
    if exists(conn, "amiflow.meter_commands"):
        for action, state, relay, created in conn.execute(
            "SELECT action, state, relay, created_at FROM amiflow.meter_commands WHERE account = %s"
            " ORDER BY created_at",
            (account,),
        ):
            # created_at is the policy's (possibly simulated) clock; confirmed_at the relay's wall clock
            events.append((created, f"{action} command {state}; relay read back: {relay or 'unknown'}"))
    story.events = sorted(events, key=lambda e: e[0])  # stable: a payment precedes the reconnect it caused
    return story


def _decision_runs(conn: psycopg.Connection[Any], account: str) -> list[tuple[datetime, str]]:
    """One event per run of consecutive decisions with the same outcome and rules (daily evaluations read as one)."""
    runs: list[tuple[datetime, datetime, str, int]] = []
    for allowed, rules, at in conn.execute(
        "SELECT allowed, deciding_rules, decided_at FROM amiflow.disconnect_decisions WHERE account = %s"
        " ORDER BY decided_at",
        (account,),
    ):
        outcome, shown = _outcome(bool(allowed), list(rules))
        what = outcome + (f" ({', '.join(shown)})" if shown else "")
        if runs and runs[-1][2] == what:
            first, _, _, n = runs[-1]
            runs[-1] = (first, at, what, n + 1)
        else:
            runs.append((at, at, what, 1))
    return [
        (first, f"disconnect policy: {what}" + (f", {n} evaluations to {last:%Y-%m-%d}" if n > 1 else ""))
        for first, last, what, n in runs
    ]
