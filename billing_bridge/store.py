"""The outbox as the dispatcher sees it: claims with a lease, bulk settles, and the operator's failed/retry views.

A claim is one short transaction: ``SELECT ... FOR UPDATE SKIP LOCKED`` picks due, unleased rows whose account has
no earlier pending row (per-account order), then sets ``lease_until``, a fresh ``claim_token`` and counts the attempt.
Another dispatcher skips the locked rows and, once committed, sees the lease. A dispatcher that dies leaves rows that
become claimable again when their lease expires. Settles match on the claim token, so a dispatcher whose lease was
taken over cannot overwrite the newer claim's result.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from billing_bridge.delivery import OutboxItem, Outcome, Verdict

__all__ = [
    "FailedItem",
    "OutboxCounts",
    "claim",
    "counts",
    "list_failed",
    "next_due_in_s",
    "requeue",
    "settle",
]

_CLAIM = """
WITH due AS (
    SELECT o.id FROM amiflow.outbox o
    WHERE o.state = 'pending' AND o.channel = %(channel)s AND o.next_attempt_at <= now()
      AND (o.lease_until IS NULL OR o.lease_until < now())
      AND (o.account IS NULL OR NOT EXISTS (
            SELECT 1 FROM amiflow.outbox e
            WHERE e.account = o.account AND e.state = 'pending' AND e.channel = o.channel AND e.id < o.id))
    ORDER BY o.next_attempt_at, o.id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE amiflow.outbox o
SET lease_until = now() + make_interval(secs => %(lease_s)s), claim_token = %(token)s, claimed_by = %(worker)s,
    attempts = o.attempts + 1, sink = %(sink)s
FROM due WHERE o.id = due.id
RETURNING o.id, o.kind, o.idempotency_key, o.account, o.payload, o.attempts
"""

_DELIVERED = """
UPDATE amiflow.outbox o
SET state = 'delivered', delivered_at = now(), response_code = u.code, last_error = NULL,
    lease_until = NULL, claim_token = NULL
FROM unnest(%s::bigint[], %s::int[]) AS u(id, code)
WHERE o.id = u.id AND o.claim_token = %s AND o.state = 'pending'
"""

_REJECTED = """
UPDATE amiflow.outbox o
SET state = 'rejected', rejected_at = now(), response_code = u.code, last_error = u.error,
    lease_until = NULL, claim_token = NULL
FROM unnest(%s::bigint[], %s::int[], %s::text[]) AS u(id, code, error)
WHERE o.id = u.id AND o.claim_token = %s AND o.state = 'pending'
"""

_RETRY = """
UPDATE amiflow.outbox o
SET next_attempt_at = now() + make_interval(secs => u.delay), response_code = u.code, last_error = u.error,
    lease_until = NULL, claim_token = NULL, attempts = o.attempts - u.unsent::int
FROM unnest(%s::bigint[], %s::int[], %s::text[], %s::float8[], %s::bool[]) AS u(id, code, error, delay, unsent)
WHERE o.id = u.id AND o.claim_token = %s AND o.state = 'pending'
"""


async def claim(
    conn: psycopg.AsyncConnection[Any], *, limit: int, lease_s: float, worker: str, sink: str, channel: str = "billing"
) -> list[OutboxItem]:
    """Claim up to ``limit`` due items of ``channel`` (``billing``, or ``email`` for e-bills; migration 0012) for
    ``lease_s`` seconds (one committed transaction)."""
    token = str(uuid.uuid4())
    params = {"limit": limit, "lease_s": lease_s, "token": token, "worker": worker, "sink": sink, "channel": channel}
    async with conn.transaction():
        cur = await conn.execute(_CLAIM, params)
        rows = await cur.fetchall()
    items = [OutboxItem(r[0], r[1], r[2], r[3], r[4], r[5], token) for r in rows]
    items.sort(key=lambda it: it.id)
    return items


async def settle(
    conn: psycopg.AsyncConnection[Any], token: str, outcomes: Sequence[Outcome], delays: dict[int, float]
) -> int:
    """Record ``outcomes`` of the claim ``token`` in bulk (one transaction); ``delays`` holds retry delays by id.

    An item that was never sent (its lease ran short) gets its claimed attempt back.

    Returns the number of rows updated (fewer than given when a lease was lost to another dispatcher).
    """
    done = [o for o in outcomes if o.verdict is Verdict.DELIVERED]
    rejected = [o for o in outcomes if o.verdict is Verdict.REJECTED]
    retry = [o for o in outcomes if o.verdict is Verdict.RETRY]
    updated = 0
    async with conn.transaction():
        if done:
            cur = await conn.execute(_DELIVERED, ([o.id for o in done], [o.code for o in done], token))
            updated += cur.rowcount
        if rejected:
            cur = await conn.execute(
                _REJECTED,
                ([o.id for o in rejected], [o.code for o in rejected], [o.error for o in rejected], token),
            )
            updated += cur.rowcount
        if retry:
            cur = await conn.execute(
                _RETRY,
                (
                    [o.id for o in retry],
                    [o.code for o in retry],
                    [o.error for o in retry],
                    [delays.get(o.id, 1.0) for o in retry],
                    [not o.sent for o in retry],
                    token,
                ),
            )
            updated += cur.rowcount
    return updated


@dataclass(frozen=True, slots=True)
class OutboxCounts:
    """How many outbox rows are in each state (``leased``: pending rows some dispatcher holds right now)."""

    pending: int
    leased: int
    delivered: int
    rejected: int


async def counts(conn: psycopg.AsyncConnection[Any], channel: str | None = None) -> OutboxCounts:
    """The outbox totals by state (of one channel when given)."""
    cur = await conn.execute(
        "SELECT count(*) FILTER (WHERE state = 'pending'),"
        " count(*) FILTER (WHERE state = 'pending' AND lease_until > now()),"
        " count(*) FILTER (WHERE state = 'delivered'), count(*) FILTER (WHERE state = 'rejected')"
        " FROM amiflow.outbox WHERE %(c)s::text IS NULL OR channel = %(c)s",
        {"c": channel},
    )
    row = await cur.fetchone()
    assert row is not None
    return OutboxCounts(*row)


async def next_due_in_s(conn: psycopg.AsyncConnection[Any], channel: str | None = None) -> float | None:
    """Seconds until the earliest pending item (of ``channel`` when given) may be claimed (0 if now; None when nothing
    is pending)."""
    cur = await conn.execute(
        "SELECT extract(epoch FROM min(greatest(next_attempt_at, coalesce(lease_until, next_attempt_at))) - now())"
        " FROM amiflow.outbox WHERE state = 'pending' AND (%(c)s::text IS NULL OR channel = %(c)s)",
        {"c": channel},
    )
    row = await cur.fetchone()
    if row is None or row[0] is None:
        return None
    return max(0.0, float(row[0]))


@dataclass(frozen=True, slots=True)
class FailedItem:
    """A rejected outbox row, kept for an operator."""

    id: int
    kind: str
    idempotency_key: str
    account: str | None
    attempts: int
    response_code: int | None
    last_error: str | None
    rejected_at: datetime | None


def list_failed(conn: psycopg.Connection[Any], *, limit: int = 1000) -> list[FailedItem]:
    """The rejected items, oldest first."""
    rows = conn.execute(
        "SELECT id, kind, idempotency_key, account, attempts, response_code, last_error, rejected_at"
        " FROM amiflow.outbox WHERE state = 'rejected' ORDER BY id LIMIT %s",
        (limit,),
    ).fetchall()
    return [FailedItem(*r) for r in rows]


def requeue(conn: psycopg.Connection[Any], ids: Sequence[int] | None) -> list[int]:
    """Put rejected items (all of them when ``ids`` is None) back to pending, due now; returns the ids re-queued.

    The stored payload is untouched, so the retry is byte-identical under the same key.
    """
    where = "state = 'rejected'" + ("" if ids is None else " AND id = ANY(%s::bigint[])")
    rows = conn.execute(
        "UPDATE amiflow.outbox SET state = 'pending', next_attempt_at = now(), lease_until = NULL,"
        f" claim_token = NULL, rejected_at = NULL WHERE {where} RETURNING id",
        () if ids is None else (list(ids),),
    ).fetchall()
    return sorted(r[0] for r in rows)
