"""The database side of the wireless M-Bus receiver: who may be heard (with their keys), and one transaction per batch
of frames (readings, quarantine, meter state).

Readings go through the same :class:`~amiflow.db.writer.BatchWriter` and edge validation
(:func:`ingest.validate.validate`: too old, from the future, implausible, registers running backwards) as MQTT
ingest, so a frame stored twice is a duplicate, never a double; frames that cannot be used and readings that fail
validation go to ``amiflow.quarantine`` with source ``wmbus``, the raw frame and a reason. Everything of a batch
commits together or not at all. Connection loss is :class:`~ingest.batch_store.DatabaseDown` (the receiver spools),
a refusal of the data a :class:`~amiflow.errors.StorageError`. Keys are read here (the ingest role may) and handed
to the decoder only; no message built here holds one.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np
import psycopg

from amiflow.db.meter_keys import load_meter_keys
from amiflow.db.quarantine import quarantine_many
from amiflow.db.writer import BatchWriter, WriteResult
from amiflow.errors import StorageError
from amiflow.types import ReadingBatch
from ingest.batch_store import DatabaseDown
from ingest.last_registers import LastRegisters
from ingest.validate import Bounds, validate
from ingest.wmbus_decode import Decoded, Senders

__all__ = ["SOURCE", "WmbusOutcome", "WmbusStore"]

SOURCE: Final = "wmbus"
_SENDERS_TTL_S: Final = 60.0  # a meter registered (or a key set) while the receiver runs is heard within a minute


@dataclass(frozen=True, slots=True)
class WmbusOutcome:
    """What one committed batch did: the writer's counts and the quarantined frames by reason."""

    written: WriteResult = field(default_factory=WriteResult)
    quarantined: dict[str, int] = field(default_factory=dict)
    rejected_readings: int = 0


class WmbusStore:
    """Writes decoded frames through one connection it owns; reconnects on demand."""

    def __init__(
        self, url: str, *, bounds: Bounds, connect_timeout_s: int = 5, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.url = url
        self.bounds = bounds
        self._timeout = connect_timeout_s
        self._clock = clock
        self._conn: psycopg.Connection[Any] | None = None
        self._writer: BatchWriter | None = None
        self._registers = LastRegisters()
        self._senders: tuple[float, Senders] | None = None

    def connect(self) -> psycopg.Connection[Any]:
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        self.close()
        try:
            self._conn = psycopg.connect(
                self.url, autocommit=True, connect_timeout=self._timeout, application_name="amiflow-ingest-wmbus"
            )
        except psycopg.OperationalError as exc:
            raise DatabaseDown(f"cannot connect to the database: {str(exc).strip()}") from exc
        self._writer = BatchWriter(self._conn, source_name=SOURCE)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn, self._writer = None, None
        self._registers.clear()

    def senders(self) -> Senders:
        """The registered wM-Bus meters and their keys (reloaded when older than a minute)."""
        now = self._clock()
        if self._senders is not None and now - self._senders[0] <= _SENDERS_TTL_S:
            return self._senders[1]
        conn = self.connect()
        try:
            rows = conn.execute(
                "SELECT name, uri FROM amiflow.meters WHERE protocol = 'wmbus' AND uri IS NOT NULL"
                " AND status <> 'inactive' ORDER BY name"
            ).fetchall()
            keys = load_meter_keys(conn, [r[0] for r in rows])
        except psycopg.Error as exc:
            raise self._translate(exc) from exc
        senders = Senders(rows, {name: key.raw for name, key in keys.items()})
        self._senders = (now, senders)
        return senders

    def _translate(self, exc: Exception) -> StorageError:
        """DatabaseDown when the connection is gone (spool and retry), else the refusal as a StorageError."""
        conn = self._conn
        self._registers.clear()  # a rolled-back transaction: cached values may never have been committed
        cause = exc.__cause__ if isinstance(exc, StorageError) else exc
        if conn is None or conn.closed or conn.broken or isinstance(cause, psycopg.OperationalError):
            self.close()
            return DatabaseDown(f"database unavailable: {str(exc).strip()}")
        return exc if isinstance(exc, StorageError) else StorageError(f"wM-Bus batch refused: {str(exc).strip()}")

    def write(self, frames: Sequence[Decoded], *, now: float) -> WmbusOutcome:
        """Store the frames' readings and quarantine the bad ones in one transaction."""
        conn = self.connect()
        try:
            with conn.transaction():
                return self._write(conn, frames, now)
        except (psycopg.Error, StorageError) as exc:  # StorageError: the writer's own translation
            translated = self._translate(exc)
            if translated is exc:
                raise
            raise translated from exc

    def quarantine_raw(self, frames: Sequence[Decoded], reason: str, detail: str) -> None:
        """Quarantine frames as they are (their data refused by the database: ``store_error``)."""
        conn = self.connect()
        try:
            quarantine_many(conn, ((SOURCE, reason, f.meter, f.raw, detail) for f in frames))
        except psycopg.Error as exc:
            raise self._translate(exc) from exc

    def _write(self, conn: psycopg.Connection[Any], frames: Sequence[Decoded], now: float) -> WmbusOutcome:
        rows: list[tuple[str, str, str | None, bytes, str | None]] = []
        counts: dict[str, int] = {}
        parts, owner = [], []
        for i, f in enumerate(frames):
            if f.reason is not None:
                rows.append((SOURCE, f.reason, f.meter, f.raw, f.detail))
                counts[f.reason] = counts.get(f.reason, 0) + 1
            if len(f.batch):
                parts.append(f.batch)
                owner.append(np.full(len(f.batch), i))
        written, rejected = WriteResult(), 0
        if parts:
            batch, of = ReadingBatch.concat(parts), np.concatenate(owner)
            last = self._registers.lookup(conn, batch)
            verdict = validate(batch, now_ts=int(now), bounds=self.bounds, last_register=last)
            keep = verdict.keep
            for i in sorted(set(of[~keep].tolist())):
                bad = (of == i) & ~keep
                reason = str(verdict.reason[bad][0])
                detail = {
                    "readings": [
                        {"obis": str(o), "ts": int(t), "value": float(v)}
                        for o, t, v in zip(batch.obis[bad], batch.ts[bad], batch.value[bad], strict=True)
                    ][:20]
                }
                rows.append((SOURCE, reason, frames[i].meter, frames[i].raw, json.dumps(detail)))  # fmt: skip
                counts[reason] = counts.get(reason, 0) + 1
                rejected += int(bad.sum())
            kept = batch.take(keep)
            quality = verdict.quality[keep]
            kept = ReadingBatch(kept.meter, kept.obis, kept.ts, kept.value, quality, kept.source, kept.unit)
            assert self._writer is not None
            written = self._writer.write(kept)
            self._registers.remember(kept)
            self._seen(conn, kept)
        if rows:
            quarantine_many(conn, rows)
        return WmbusOutcome(written, counts, rejected)

    def _seen(self, conn: psycopg.Connection[Any], kept: ReadingBatch) -> None:
        if not len(kept):
            return
        last: dict[str, int] = {}
        for meter, ts in zip(kept.meter.tolist(), kept.ts.tolist(), strict=True):
            last[meter] = max(ts, last.get(meter, ts))
        conn.execute(
            "UPDATE amiflow.meters m SET last_seen_at = greatest(m.last_seen_at, v.t),"
            " state = CASE WHEN m.state IN ('unknown', 'offline') THEN 'online' ELSE m.state END"
            " FROM unnest(%s::text[], %s::timestamptz[]) AS v(name, t) WHERE m.name = v.name",
            (list(last), [datetime.fromtimestamp(t, UTC) for t in last.values()]),
        )
