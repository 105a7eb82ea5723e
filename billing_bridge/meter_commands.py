"""The meter command queue: the one way to create a relay command, and the lock that serialises disconnect runs.

A command is a row of ``amiflow.meter_commands`` (``pending`` until :mod:`billing_bridge.command_run` sends it). A
disconnect needs an allowing policy decision of its account: :func:`issue_command` refuses one without, and the
database refuses it too (trigger in migration 0007).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg

from amiflow.errors import PolicyBlocked

__all__ = ["exclusive", "issue_command"]

_RUN_LOCK = 0x616D69646973  # "amidis"


@contextmanager
def exclusive(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """Hold the disconnect-run lock (a session advisory lock) so two runs never plan or dispatch at once."""
    conn.execute("SELECT pg_advisory_lock(%s)", (_RUN_LOCK,))
    try:
        yield
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_RUN_LOCK,))


def issue_command(
    conn: psycopg.Connection[Any],
    meter: str,
    action: str,
    *,
    account: str | None,
    now: datetime,
    decision_id: int | None = None,
    due_by: datetime | None = None,
) -> uuid.UUID:
    """Create a pending command. A disconnect needs ``decision_id`` of an allowing decision of ``account``:
    otherwise PolicyBlocked (the database enforces the same)."""
    if action == "disconnect":
        row = conn.execute(
            "SELECT allowed, account FROM amiflow.disconnect_decisions WHERE id = %s", (decision_id,)
        ).fetchone()
        if decision_id is None or row is None or not row[0] or row[1] != account:
            raise PolicyBlocked(f"disconnect of meter {meter} refused: no allowing policy decision", ("no_decision",))
    cid = uuid.uuid4()
    conn.execute(
        "INSERT INTO amiflow.meter_commands (id, meter, account, action, decision_id, created_at, due_by)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (cid, meter, account, action, decision_id, now, due_by),
    )
    return cid
