"""The reminder ladder: payment_reminder, disconnect_warning, disconnect_scheduled, one per rung per debt.

The rungs and their days after the due date come from the rule set (``[reminders]``). A rung is sent only after the
rung before it, and never closer to it than the ladder's spacing, so a run that was skipped for a week does not send
three notices at once. High-risk accounts (:mod:`billing_bridge.risk`) get each rung ``high_risk_advance_days``
earlier. Warnings and disconnect notices go only to accounts that could be disconnected (not protected, no open
dispute, no payment plan in good standing, overdue at least the rule set's minimum); the others get payment
reminders only. Prepaid accounts are handled by :mod:`billing_bridge.prepaid`. An account with an installment plan in
good standing (:mod:`billing_bridge.plans`) gets no rung at all: each run first reviews the plans, so a plan broken
today lets its account's ladder resume in the same run.

Idempotency: ``amiflow.notices`` has one row per (account, debt, type), written in the same transaction as the
outbox row (key ``notice:{type}:{account}:{debt_ref}``): a re-run sends nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Jsonb

from amiflow.db.outbox import enqueue
from billing_bridge.arrears import Arrears, compute_arrears, load_book, load_facts
from billing_bridge.plans import plans_in_good_standing, review_plans
from billing_bridge.policy import DisconnectCase, LadderRung, RuleSet
from billing_bridge.prepaid import prepaid_positions
from billing_bridge.risk import RiskScore, consumption_change, features_for, score

__all__ = [
    "SentNotice",
    "disconnect_cases",
    "next_rung",
    "notices_sent",
    "riskiest_accounts",
    "score_accounts",
    "send_reminders",
]

log = logging.getLogger(__name__)

_PAYMENT_ONLY = frozenset({"payment_reminder"})


@dataclass(frozen=True, slots=True)
class SentNotice:
    """One notice queued by a run."""

    account: str
    debt_ref: str
    type: str
    idempotency_key: str


def next_rung(
    ladder: Sequence[LadderRung],
    due_date: date,
    sent: Mapping[str, date],
    today: date,
    *,
    advance_days: int = 0,
    allowed: frozenset[str] | None = None,
) -> LadderRung | None:
    """The rung to send today for a debt due on ``due_date``, given the rungs already ``sent`` (type -> date)."""
    prev: tuple[date, int] | None = None
    for rung in ladder:
        if rung.type in sent:
            prev = (sent[rung.type], rung.days_after_due)
            continue
        if allowed is not None and rung.type not in allowed:
            return None
        on = due_date + timedelta(days=max(rung.days_after_due - advance_days, 0))
        if prev is not None:
            on = max(on, prev[0] + timedelta(days=rung.days_after_due - prev[1]))
        return rung if today >= on else None
    return None


def notices_sent(conn: psycopg.Connection[Any], account: str, debt_ref: str) -> dict[str, datetime]:
    """The notice types already sent for one debt, with when."""
    rows = conn.execute(
        "SELECT type, sent_at FROM amiflow.notices WHERE account = %s AND debt_ref = %s", (account, debt_ref)
    ).fetchall()
    return {t: at for t, at in rows}


def score_accounts(
    conn: psycopg.Connection[Any], ruleset: RuleSet, today: date
) -> tuple[dict[str, Arrears], dict[str, RiskScore]]:
    """Arrears and risk scores of every account with debts or payment history."""
    book = load_book(conn, today=today, terms_days=ruleset.payment_terms_days, tz=ruleset.timezone)
    debts = [d for items in book.debts.values() for d in items]
    payments = [p for items in book.payments.values() for p in items]
    arrears = compute_arrears(debts, payments, today)
    change = consumption_change(conn, today)
    scores = {}
    for account in sorted(set(arrears) | set(book.history)):
        f = features_for(
            arrears.get(account),
            book.history.get(account, ()),
            book.typical_bill.get(account),
            today,
            change.get(account),
        )
        scores[account] = score(account, f)
    return arrears, scores


def riskiest_accounts(
    conn: psycopg.Connection[Any], ruleset: RuleSet, today: date, *, top: int
) -> list[tuple[RiskScore, Arrears | None]]:
    """The ``top`` accounts by arrears-risk score (highest first, then by account), each with its arrears if any."""
    arrears, scores = score_accounts(conn, ruleset, today)
    ranked = sorted(scores.values(), key=lambda s: (-s.score, s.account))[:top]
    return [(s, arrears.get(s.account)) for s in ranked]


def _payload(ruleset: RuleSet, a: Arrears, rung: LadderRung, now: datetime, risk: RiskScore | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": rung.type,
        "account": a.account,
        "debt_ref": a.debt_ref,
        "overdue_amount": str(a.overdue_amount),
        "currency": ruleset.currency,
        "due_date": a.due_date.isoformat() if a.due_date else None,
        "days_past_due": a.days_past_due,
        "sent_at": now.isoformat(),
        "ruleset": {"id": ruleset.id, "version": ruleset.version},
        "risk_score": risk.score if risk else None,
    }
    if rung.type == "disconnect_scheduled":
        not_before = now.astimezone(ZoneInfo(ruleset.timezone)).date() + timedelta(days=ruleset.notice_period_days)
        body["disconnect_not_before"] = not_before.isoformat()
    return body


def send_reminders(conn: psycopg.Connection[Any], ruleset: RuleSet, *, now: datetime) -> list[SentNotice]:
    """Queue today's due rungs for every overdue account, highest risk first; returns what was queued."""
    today = now.astimezone(ZoneInfo(ruleset.timezone)).date()
    review_plans(conn, ruleset, now=now)
    under_plan = plans_in_good_standing(conn, ruleset, today)
    arrears, scores = score_accounts(conn, ruleset, today)
    facts = load_facts(conn)
    order = sorted(
        arrears.values(), key=lambda a: (-(scores[a.account].score if a.account in scores else 0), a.account)
    )
    sent: list[SentNotice] = []
    for a in order:
        f = facts.get(a.account)
        if a.debt_ref is None or a.due_date is None or a.overdue_amount <= 0 or (f and f.prepaid):
            continue
        if a.account in under_plan:  # the plan suspends the ladder while it is kept
            continue
        risk = scores.get(a.account)
        high = risk is not None and risk.score >= ruleset.high_risk_score
        collectable = (f is None or f.collectable) and a.overdue_amount >= ruleset.min_debt
        have = {
            t: at.astimezone(ZoneInfo(ruleset.timezone)).date()
            for t, at in notices_sent(conn, a.account, a.debt_ref).items()
        }
        rung = next_rung(
            ruleset.ladder,
            a.due_date,
            have,
            today,
            advance_days=ruleset.high_risk_advance_days if high else 0,
            allowed=None if collectable else _PAYMENT_ONLY,
        )
        if rung is None:
            continue
        key = f"notice:{rung.type}:{a.account}:{a.debt_ref}"
        payload = _payload(ruleset, a, rung, now, risk)
        with conn.transaction():
            row = conn.execute(
                "INSERT INTO amiflow.notices (account, debt_ref, type, sent_at, outbox_key, detail)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING id",
                (a.account, a.debt_ref, rung.type, now, key, Jsonb(payload)),
            ).fetchone()
            if row is None:
                continue
            enqueue(conn, kind="notice", idempotency_key=key, payload=payload, account=a.account)
        log.info("notice %s queued for account %s (%s)", rung.type, a.account, a.debt_ref)
        sent.append(SentNotice(a.account, a.debt_ref, rung.type, key))
    return sent


def disconnect_cases(conn: psycopg.Connection[Any], ruleset: RuleSet, now: datetime) -> list[DisconnectCase]:
    """The policy cases of today, highest risk first: each overdue account (at least the minimum debt) with the
    notices sent for its debt, and each prepaid account at zero with its low-balance notices of the cycle."""
    today = now.astimezone(ZoneInfo(ruleset.timezone)).date()
    arrears, scores = score_accounts(conn, ruleset, today)
    facts = load_facts(conn)
    under_plan = plans_in_good_standing(conn, ruleset, today)
    cases = []
    for a in sorted(
        arrears.values(), key=lambda a: (-(scores[a.account].score if a.account in scores else 0), a.account)
    ):
        f = facts.get(a.account)
        if a.debt_ref is None or a.overdue_amount < ruleset.min_debt or (f and f.prepaid):
            continue
        cases.append(
            DisconnectCase(
                account=a.account,
                meter=None,
                debt_ref=a.debt_ref,
                overdue_amount=a.overdue_amount,
                days_past_due=a.days_past_due,
                notices_sent=notices_sent(conn, a.account, a.debt_ref),
                protected=f.protected if f else frozenset(),
                open_dispute=bool(f and f.open_dispute),
                payment_plan=f.payment_plan if f else "none",
                estimated_share=a.estimated_share,
                installment_plan=str(under_plan[a.account].id) if a.account in under_plan else None,
            )
        )
    for p in prepaid_positions(conn):
        if p.balance > 0 or p.zero_since is None:
            continue
        f = facts.get(p.account)
        ref = f"prepaid:{p.account}:{p.zero_since.isoformat()}"
        sent: dict[str, datetime] = {}
        for t, at in notices_sent(conn, p.account, p.notice_ref).items():
            base_type = t.partition("@")[0]  # low_balance@10.00 -> low_balance (the earliest threshold counts)
            sent[base_type] = min(at, sent.get(base_type, at))
        cases.append(
            DisconnectCase(
                account=p.account,
                meter=None,
                debt_ref=ref,
                overdue_amount=-p.balance,
                days_past_due=0,
                notices_sent=sent,
                protected=f.protected if f else frozenset(),
                open_dispute=bool(f and f.open_dispute),
                payment_plan=f.payment_plan if f else "none",
                prepaid=True,
                zero_since=p.zero_since,
            )
        )
    return cases
