"""The transactional outbox: bills, notices and commands leave only through here, once, with a stable key."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from amiflow.errors import StorageError

__all__ = ["enqueue", "enqueue_many"]


def enqueue(
    conn: psycopg.Connection[Any],
    *,
    kind: str,
    idempotency_key: str,
    payload: dict[str, Any],
    account: str | None = None,
) -> bool:
    """Queue ``payload`` under ``idempotency_key`` in the caller's transaction.

    Returns True when queued, False when the same key is already queued with the same payload (a re-run). The same
    key with a different payload raises StorageError: nothing may be sent twice with different content.
    """
    row = conn.execute(
        "INSERT INTO amiflow.outbox (kind, idempotency_key, account, payload) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
        (kind, idempotency_key, account, Jsonb(payload)),
    ).fetchone()
    if row is not None:
        return True
    same = conn.execute(
        "SELECT payload = %s::jsonb FROM amiflow.outbox WHERE idempotency_key = %s", (Jsonb(payload), idempotency_key)
    ).fetchone()
    if same is None or not same[0]:
        raise StorageError(f"outbox key {idempotency_key!r} is already queued with different content")
    return False


def enqueue_many(
    conn: psycopg.Connection[Any], *, kind: str, items: Sequence[tuple[str, dict[str, Any], str | None]]
) -> int:
    """Queue many (idempotency_key, payload, account) items of one ``kind`` in the caller's transaction, in their
    order, with one statement: what :func:`enqueue` does for each of them in turn. Returns how many were queued (the
    others were queued already with the same payload); StorageError, and nothing queued once the caller rolls back,
    when a key is already queued with different content."""
    if not items:
        return 0
    keys = [k for k, _, _ in items]
    payloads = [Jsonb(p) for _, p, _ in items]
    rows = conn.execute(
        "INSERT INTO amiflow.outbox (kind, idempotency_key, account, payload)"
        " SELECT %s, k, a, p FROM unnest(%s::text[], %s::text[], %b::jsonb[]) WITH ORDINALITY AS g(k, a, p, n)"
        " ORDER BY n ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key",
        (kind, keys, [a for _, _, a in items], payloads),
    ).fetchall()
    if len(rows) == len(items):
        return len(rows)
    queued = {r[0] for r in rows}  # each by its first item (in order); every other item must match what is queued
    rest = []
    for k, p in zip(keys, payloads, strict=True):
        if k in queued:
            queued.discard(k)
        else:
            rest.append((k, p))
    differ = conn.execute(
        "SELECT g.k FROM unnest(%s::text[], %b::jsonb[]) AS g(k, p) LEFT JOIN amiflow.outbox o"
        " ON o.idempotency_key = g.k WHERE o.payload IS DISTINCT FROM g.p LIMIT 1",
        ([k for k, _ in rest], [p for _, p in rest]),
    ).fetchone()
    if differ is not None:
        raise StorageError(f"outbox key {differ[0]!r} is already queued with different content")
    return len(rows)
