"""Database side of the push readers: which meters push, their boundary cursor, and storing what they sent.

Synchronous psycopg on one autocommit connection, called through ``asyncio.to_thread`` one operation at a time
(beside the poller, on the poller's connection and under its lock). Readings go through the same
:class:`~amiflow.db.writer.BatchWriter` as the poller's (idempotent: a frame stored twice is a duplicate); bad frames
go to ``amiflow.quarantine`` with their raw bytes, the protocol as ``source`` and the frame's reason; the boundary
register and the link's health are the poller's own bookkeeping (``amiflow.poll_state`` through
:class:`~ingest.poll_store.PollStore`: ``last_register_ts``/``last_register_wh``, failures, ``offline``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import psycopg

from amiflow.db.quarantine import quarantine_many
from amiflow.db.writer import BatchWriter, WriteResult
from amiflow.types import ReadingBatch
from ingest.poll_store import PolledMeterRow, PollStore
from ingest.push_decoders import BadFrame
from ingest.push_schedule import Boundary

__all__ = ["PUSH_PROTOCOLS", "PushStore", "Saved"]

#: Protocols whose meters push (their URIs are read, never polled): SML and DSMR P1 on a serial port or behind a
#: TCP serial server. MQTT meters push too, through the broker (ingest.mqtt_worker).
PUSH_PROTOCOLS: Final = ("p1", "sml")


@dataclass(frozen=True, slots=True)
class Saved:
    """What one save did: the writer's counts and how many bad frames were quarantined."""

    written: WriteResult
    quarantined: int


class PushStore:
    """The push readers' database operations on one autocommit connection."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        self._poll = PollStore(conn)
        self._writer = BatchWriter(conn, source_name="push")

    @classmethod
    def beside(cls, poll_store: object) -> PushStore | None:
        """A push store on a poller's connection (the poller's database lock serialises the two), or None when
        the poller's store has no database connection (a test double)."""
        conn = getattr(poll_store, "_conn", None)
        return cls(conn) if isinstance(conn, psycopg.Connection) else None

    def meters(self) -> list[PolledMeterRow]:
        """The registered push meters with a URI (mqtt:// ones excepted: they come through the broker)."""
        rows = self._conn.execute(
            "SELECT id, name, protocol, uri, timezone FROM amiflow.meters WHERE protocol = ANY(%s)"
            " AND uri IS NOT NULL AND uri NOT LIKE 'mqtt:%%' AND status <> 'inactive' ORDER BY name",
            (list(PUSH_PROTOCOLS),),
        ).fetchall()
        return [PolledMeterRow(*r) for r in rows]

    def last_boundary(self, meter_id: int) -> Boundary | None:
        """The register at the last interval boundary stored for the meter, where its interval series goes on."""
        cursor = self._poll.cursor(meter_id)
        if cursor.last_register_ts is None or cursor.last_register_wh is None:
            return None
        return Boundary(int(cursor.last_register_ts.timestamp()), float(cursor.last_register_wh))

    def save(
        self,
        meter: PolledMeterRow,
        batch: ReadingBatch,
        bad: Sequence[BadFrame],
        mark: Boundary | None,
        at: datetime,
    ) -> Saved:
        """Store ``batch``, quarantine ``bad`` (source = the meter's protocol) and advance the boundary cursor."""
        written = self._writer.write(batch) if len(batch) else WriteResult()
        rows = [(meter.protocol, b.reason, meter.name, b.raw, b.detail) for b in bad]
        quarantined = quarantine_many(self._conn, rows) if rows else 0
        if mark is not None:
            self._poll.record_success(
                meter.meter_id,
                at,
                last_profile_ts=None,
                last_register_ts=datetime.fromtimestamp(mark.ts, UTC),
                last_register_wh=mark.register_wh,
            )
        return Saved(written, quarantined)

    def link_failed(self, meter_id: int, at: datetime, error: str, *, offline_after: int) -> int:
        """Record a dropped or refused link; the meter is marked offline after ``offline_after`` in a row."""
        failures = self._poll.record_failure(meter_id, at, error)
        if failures >= offline_after:
            self._poll.mark_offline(meter_id)
        return failures

    def link_up(self, meter_id: int, at: datetime) -> None:
        """The link carries good frames again: the meter is online."""
        self._conn.execute(
            "UPDATE amiflow.meters SET state = 'online', last_seen_at = %s WHERE id = %s", (at, meter_id)
        )
        self._conn.execute("UPDATE amiflow.poll_state SET failures = 0 WHERE meter_id = %s", (meter_id,))
