"""Quarantine: bad input kept with its raw bytes and a reason code, never lost and never crashing a worker."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg

__all__ = ["quarantine", "quarantine_many"]

_COPY = "COPY amiflow.quarantine (source, reason, meter, raw, detail) FROM STDIN"


def quarantine(
    conn: psycopg.Connection[Any],
    *,
    source: str,
    reason: str,
    raw: bytes,
    meter: str | None = None,
    detail: str | None = None,
) -> None:
    """Store one quarantine record (in the caller's transaction, if any)."""
    conn.execute(
        "INSERT INTO amiflow.quarantine (source, reason, meter, raw, detail) VALUES (%s, %s, %s, %s, %s)",
        (source, reason, meter, raw, detail),
    )


def quarantine_many(
    conn: psycopg.Connection[Any], rows: Iterable[tuple[str, str, str | None, bytes, str | None]]
) -> int:
    """Store many records given as (source, reason, meter, raw, detail); returns how many."""
    count = 0
    with conn.cursor() as cur, cur.copy(_COPY) as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count
