"""Database side of the poller: which meters to poll, their cursors, clock checks, and storing what was read.

Synchronous psycopg; the poller calls it through ``asyncio.to_thread`` one operation at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from amiflow.db.writer import BatchWriter, WriteResult
from amiflow.types import ReadingBatch

__all__ = ["PollCursor", "PollStore", "PolledMeterRow"]

POLLED_PROTOCOLS = ("dlms", "modbus", "iec62056-21", "mbus")


@dataclass(frozen=True, slots=True)
class PolledMeterRow:
    meter_id: int
    name: str
    protocol: str
    uri: str
    timezone: str


@dataclass(frozen=True, slots=True)
class PollCursor:
    last_profile_ts: datetime | None = None
    last_register_ts: datetime | None = None
    last_register_wh: float | None = None
    failures: int = 0


class PollStore:
    """The poller's database operations on one autocommit connection."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        self._writer = BatchWriter(conn, source_name="poller")

    def meters(self) -> list[PolledMeterRow]:
        rows = self._conn.execute(
            "SELECT id, name, protocol, uri, timezone FROM amiflow.meters"
            " WHERE protocol = ANY(%s) AND uri IS NOT NULL AND status <> 'inactive' ORDER BY name",
            (list(POLLED_PROTOCOLS),),
        ).fetchall()
        return [PolledMeterRow(*r) for r in rows]

    def cursor(self, meter_id: int) -> PollCursor:
        row = self._conn.execute(
            "SELECT last_profile_ts, last_register_ts, last_register_wh, failures FROM amiflow.poll_state"
            " WHERE meter_id = %s",
            (meter_id,),
        ).fetchone()
        if row is None:
            # a meter polled for the first time: continue after its newest stored interval, if any
            last = self._conn.execute(
                "SELECT max(ts) FROM amiflow.readings WHERE meter_id = %s AND channel_id = 1", (meter_id,)
            ).fetchone()
            return PollCursor(last_profile_ts=last[0] if last else None)
        return PollCursor(*row)

    def store(self, batch: ReadingBatch) -> WriteResult:
        return self._writer.write(batch)

    def record_success(
        self,
        meter_id: int,
        at: datetime,
        *,
        last_profile_ts: datetime | None,
        last_register_ts: datetime | None,
        last_register_wh: float | None,
    ) -> None:
        self._conn.execute(
            "INSERT INTO amiflow.poll_state AS p (meter_id, last_profile_ts, last_register_ts, last_register_wh,"
            " last_attempt_at, last_success_at, failures, polls, successes)"
            " VALUES (%(m)s, %(lp)s, %(lr)s, %(lw)s, %(at)s, %(at)s, 0, 1, 1)"
            " ON CONFLICT (meter_id) DO UPDATE SET"
            " last_profile_ts = coalesce(greatest(p.last_profile_ts, EXCLUDED.last_profile_ts), p.last_profile_ts,"
            "   EXCLUDED.last_profile_ts),"
            " last_register_ts = coalesce(EXCLUDED.last_register_ts, p.last_register_ts),"
            " last_register_wh = coalesce(EXCLUDED.last_register_wh, p.last_register_wh),"
            " last_attempt_at = EXCLUDED.last_attempt_at, last_success_at = EXCLUDED.last_success_at,"
            " failures = 0, polls = p.polls + 1, successes = p.successes + 1, last_error = NULL",
            {"m": meter_id, "lp": last_profile_ts, "lr": last_register_ts, "lw": last_register_wh, "at": at},
        )
        self._conn.execute(
            "UPDATE amiflow.meters SET state = 'online', last_seen_at = %s WHERE id = %s", (at, meter_id)
        )

    def record_failure(self, meter_id: int, at: datetime, error: str) -> int:
        row = self._conn.execute(
            "INSERT INTO amiflow.poll_state AS p (meter_id, last_attempt_at, failures, polls, last_error)"
            " VALUES (%s, %s, 1, 1, %s) ON CONFLICT (meter_id) DO UPDATE SET"
            " last_attempt_at = EXCLUDED.last_attempt_at, failures = p.failures + 1, polls = p.polls + 1,"
            " last_error = EXCLUDED.last_error RETURNING failures",
            (meter_id, at, error[:500]),
        ).fetchone()
        return int(row[0]) if row else 1

    def mark_offline(self, meter_id: int) -> None:
        self._conn.execute("UPDATE amiflow.meters SET state = 'offline' WHERE id = %s", (meter_id,))

    def record_clock(self, meter_id: int, at: datetime, offset_s: float, within: bool, synced: bool) -> None:
        self._conn.execute(
            "INSERT INTO amiflow.clock_checks (meter_id, checked_at, offset_s, within_tolerance, synced)"
            " VALUES (%s, %s, %s, %s, %s)",
            (meter_id, at, offset_s, within, synced),
        )
        if not within:
            self._conn.execute(
                "INSERT INTO amiflow.meter_events (meter_id, ts, code, detail, source)"
                " VALUES (%s, %s, 'clock_drift', jsonb_build_object('offset_s', %s::float8, 'synced', %s::bool), 2)"
                " ON CONFLICT DO NOTHING",
                (meter_id, at, offset_s, synced),
            )
