"""The operational figures of the dashboard, one SQL query (or two) each.

They read the contract views of CONTRACT.md (``v_quarantine``, ``v_bills``, ``v_outbox``) where those hold the
columns, and the operational tables where they do not: ``readings.received_at`` (when a reading was stored),
``meters.last_seen_at`` (when a meter was last heard from: ingest, the poller and the push readers write it),
``bills.created_at``, ``payments.received_at``, ``meter_commands`` and ``disconnect_decisions``.

Readings per minute count the readings stored in each of the last ten minutes whose interval ends within
``lookback_s`` before now: the bound lets PostgreSQL skip every older partition or chunk (``readings`` has no index on
``received_at``, on purpose: ARCHITECTURE.md), so a backfill of older intervals is not counted here.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from amiflow_app.dashboard.model import (
    BillsFigure,
    BlockedDisconnect,
    DisconnectsFigure,
    Money,
    PaymentsFigure,
    PendingDisconnect,
    QuarantineFigure,
    QuarantineReason,
    ReadingsFigure,
    SilentFigure,
    SilentMeter,
)

__all__ = [
    "FigureOptions",
    "bills_figure",
    "disconnects_figure",
    "money",
    "payments_figure",
    "quarantine_figure",
    "readings_figure",
    "silent_figure",
]

_MINUTES = 10


@dataclass(frozen=True, slots=True)
class FigureOptions:
    """What the figures count: a meter is silent after ``silent_intervals`` intervals of ``interval_s`` without a
    reading; readings per minute look at intervals ending within ``lookback_s``; lists show at most ``listed`` rows."""

    silent_intervals: int = 4
    interval_s: int = 900
    lookback_s: int = 2 * 86400
    listed: int = 20


def money(amount: Decimal | None) -> str:
    """A decimal string with two places (stored amounts are whole cents already, so nothing is rounded)."""
    return f"{amount or Decimal(0):.2f}"


def readings_figure(conn: psycopg.Connection[Any], opts: FigureOptions) -> ReadingsFigure:
    rows = conn.execute(
        "SELECT floor(extract(epoch FROM now() - received_at) / 60)::int AS ago, count(*) FROM amiflow.readings"
        " WHERE received_at > now() - make_interval(mins => %s) AND ts > now() - make_interval(secs => %s)"
        " GROUP BY 1",
        (_MINUTES, opts.lookback_s),
    ).fetchall()
    per_minute = [0] * _MINUTES
    for ago, n in rows:
        if 0 <= ago < _MINUTES:
            per_minute[ago] += int(n)
    return ReadingsFigure(last_minute=per_minute[0], per_minute=per_minute, lookback_s=opts.lookback_s)


def quarantine_figure(conn: psycopg.Connection[Any]) -> QuarantineFigure:
    rows = conn.execute(
        "SELECT reason, count(*) FILTER (WHERE received_at > now() - interval '24 hours'), count(*), max(received_at)"
        " FROM amiflow.v_quarantine GROUP BY reason ORDER BY 2 DESC, 3 DESC, reason"
    ).fetchall()
    reasons = [QuarantineReason(reason=r, last_24h=d, total=t, last_at=at) for r, d, t, at in rows]
    return QuarantineFigure(
        last_24h=sum(r.last_24h for r in reasons), total=sum(r.total for r in reasons), by_reason=reasons
    )


def silent_figure(conn: psycopg.Connection[Any], opts: FigureOptions) -> SilentFigure:
    after_s = opts.silent_intervals * opts.interval_s
    silent = "(last_seen_at IS NULL OR last_seen_at < now() - make_interval(secs => %(s)s))"
    counts = conn.execute(
        f"SELECT count(*) FILTER (WHERE {silent}), count(*) FILTER (WHERE last_seen_at IS NULL), count(*)"
        " FROM amiflow.meters WHERE status = 'active'",
        {"s": after_s},
    ).fetchone()
    rows = conn.execute(
        f"SELECT name, protocol, last_seen_at FROM amiflow.meters WHERE status = 'active' AND {silent}"
        " ORDER BY last_seen_at NULLS FIRST, name LIMIT %(n)s",
        {"s": after_s, "n": opts.listed},
    ).fetchall()
    count, never, active = counts or (0, 0, 0)
    return SilentFigure(
        count=count,
        never_seen=never,
        active=active,
        intervals=opts.silent_intervals,
        interval_s=opts.interval_s,
        meters=[SilentMeter(meter=n, protocol=p, last_seen_at=at) for n, p, at in rows],
    )


def bills_figure(conn: psycopg.Connection[Any], midnight: datetime) -> BillsFigure:
    """The newest billed month (by the month of the last billed day), what was issued today, the bills' outbox."""
    latest = conn.execute(
        "SELECT max(date_trunc('month', period_end))::date FROM amiflow.v_bills WHERE status = 'issued'"
    ).fetchone()
    month = latest[0] if latest else None
    totals: list[Money] = []
    issued = 0
    if month is not None:
        rows = conn.execute(
            "SELECT currency, count(*), sum(total) FROM amiflow.v_bills WHERE status = 'issued'"
            " AND period_end >= %s AND period_end < %s GROUP BY currency ORDER BY currency",
            (month, (month + timedelta(days=32)).replace(day=1)),
        ).fetchall()
        totals = [Money(currency=c, amount=money(s)) for c, _, s in rows]
        issued = sum(int(n) for _, n, _ in rows)
    today = conn.execute(
        "SELECT count(*) FROM amiflow.bills WHERE status = 'issued' AND created_at >= %s", (midnight,)
    ).fetchone()
    outbox = {"pending": 0, "delivered": 0, "rejected": 0}
    for state, n in conn.execute(
        "SELECT state, count(*) FROM amiflow.v_outbox WHERE kind = 'bill' GROUP BY state"
    ).fetchall():
        outbox[str(state)] = int(n)
    return BillsFigure(month=month, issued=issued, totals=totals, issued_today=today[0] if today else 0, outbox=outbox)


def payments_figure(conn: psycopg.Connection[Any], midnight: datetime) -> PaymentsFigure:
    rows = conn.execute(
        "SELECT currency, count(*), sum(amount) FROM amiflow.payments WHERE received_at >= %s"
        " GROUP BY currency ORDER BY currency",
        (midnight,),
    ).fetchall()
    return PaymentsFigure(
        day=midnight.date(),
        count=sum(int(n) for _, n, _ in rows),
        totals=[Money(currency=c.strip(), amount=money(s)) for c, _, s in rows],
    )


def disconnects_figure(
    conn: psycopg.Connection[Any], opts: FigureOptions, overdue: Collection[str]
) -> DisconnectsFigure:
    """Disconnect commands not yet done, and the accounts in ``overdue`` whose latest decision blocked one."""
    counts = dict(
        conn.execute(
            "SELECT state, count(*) FROM amiflow.meter_commands WHERE action = 'disconnect'"
            " AND state IN ('pending', 'sent', 'escalated') GROUP BY state"
        ).fetchall()
    )
    commands = conn.execute(
        "SELECT meter, account, state, attempts, created_at, last_error FROM amiflow.meter_commands"
        " WHERE action = 'disconnect' AND state IN ('pending', 'sent', 'escalated')"
        " ORDER BY state = 'escalated' DESC, created_at, meter LIMIT %s",
        (opts.listed,),
    ).fetchall()
    rows = conn.execute(
        "SELECT account, meter, deciding_rules, ARRAY(SELECT r->>'detail' FROM jsonb_array_elements(results->'results')"
        " r WHERE (r->>'blocks')::boolean ORDER BY r->>'rule'), ruleset_id, decided_at FROM"
        " (SELECT DISTINCT ON (account) * FROM amiflow.disconnect_decisions ORDER BY account, decided_at DESC, id DESC)"
        " latest WHERE NOT allowed AND account = ANY(%s) ORDER BY decided_at DESC, account",
        (sorted(overdue),),
    ).fetchall()
    by_rule: dict[str, int] = {}
    for row in rows:
        for rule in row[2]:
            by_rule[rule] = by_rule.get(rule, 0) + 1
    return DisconnectsFigure(
        pending=int(counts.get("pending", 0)) + int(counts.get("sent", 0)),
        escalated=int(counts.get("escalated", 0)),
        commands=[
            PendingDisconnect(meter=m, account=a, state=s, attempts=n, created_at=at, last_error=e)
            for m, a, s, n, at, e in commands
        ],
        blocked=len(rows),
        blocked_by_rule=dict(sorted(by_rule.items(), key=lambda kv: (-kv[1], kv[0]))),
        decisions=[
            BlockedDisconnect(account=a, meter=m, rules=list(r), detail=[t or "" for t in y], ruleset=s, decided_at=at)
            for a, m, r, y, s, at in rows[: opts.listed]
        ],
    )
