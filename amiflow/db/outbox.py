"""The transactional outbox: bills, notices and commands leave only through here, once, with a stable key."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from amiflow.errors import StorageError

__all__ = ["enqueue"]


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
