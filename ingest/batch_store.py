"""The database side of MQTT ingest: one transaction per prepared batch (readings, quarantine, events, meter state).

Everything of a batch commits together or not at all, so a batch can be acknowledged to the broker exactly when
its transaction has committed. After a rollback every cache is dropped (a rolled-back channel or meter id must
never be reused).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb

from amiflow.db.quarantine import quarantine_many
from amiflow.db.writer import BatchWriter, WriteResult
from amiflow.errors import StorageError
from amiflow.types import QualityFlag, ReadingBatch
from ingest.batching import Prepared, QuarantineRow
from ingest.last_registers import LastRegisters
from ingest.validate import Bounds, validate
from protocols.mqtt_payloads import MeterEvent

__all__ = ["BatchOutcome", "DatabaseDown", "IngestStore"]

log = logging.getLogger(__name__)

_METER_TTL_S = 60.0  # a meter commissioned elsewhere loses its unverified flag within a minute
_SEEN_EVERY_S = 30.0  # last_seen_at is written at most this often per meter
_VALID_NAME = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-")
_SOURCE = "mqtt"


class DatabaseDown(StorageError):
    """The database cannot be reached (connection refused, broken or timed out): spool and retry later."""


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What one committed batch did."""

    written: WriteResult
    events: int
    quarantined: list[QuarantineRow]
    flagged: dict[str, int]
    rejected_readings: dict[str, int]


class IngestStore:
    """Writes prepared batches through one connection it owns; reconnects on demand."""

    def __init__(
        self,
        url: str,
        *,
        bounds: Bounds,
        unknown_meter_policy: str = "quarantine",
        connect_timeout_s: int = 5,
        prepare: Callable[[], None] | None = None,
    ) -> None:
        """``prepare`` runs once, on the first connection (a worker started while the database was away applies
        the migrations then); while it fails with a StorageError the database counts as down."""
        self.url = url
        self._prepare = prepare
        self.bounds = bounds
        self.policy = unknown_meter_policy
        self._timeout = connect_timeout_s
        self._conn: psycopg.Connection[Any] | None = None
        self._writer: BatchWriter | None = None
        self._meters: dict[str, tuple[int, str, float]] = {}  # name -> (id, status, loaded at)
        self._registers = LastRegisters()
        self._seen_written: dict[str, float] = {}

    # -- connection ----------------------------------------------------------------------------------------------
    def connect(self) -> None:
        """Open the connection if needed; raises DatabaseDown if the server cannot be reached."""
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return
        self.close()
        try:
            self._conn = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=self._timeout,
                keepalives=1,
                keepalives_idle=5,
                keepalives_interval=2,
                keepalives_count=3,
                tcp_user_timeout=15000,
                application_name="amiflow-ingest",
            )
        except psycopg.OperationalError as exc:
            raise DatabaseDown(f"cannot connect to the database: {str(exc).strip()}") from exc
        if self._prepare is not None:
            try:
                self._prepare()
            except StorageError as exc:
                self.close()
                raise DatabaseDown(str(exc)) from exc
            self._prepare = None
        self._writer = BatchWriter(self._conn, source_name=_SOURCE)

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn = None
        self._writer = None

    def ping(self) -> bool:
        """True when the database answers."""
        try:
            self.connect()
            assert self._conn is not None
            self._conn.execute("SELECT 1")
            return True
        except (DatabaseDown, psycopg.Error):
            self.close()
            return False

    def _forget(self) -> None:
        self._meters.clear()
        self._registers.clear()
        self._seen_written.clear()
        self._writer = BatchWriter(self._conn, source_name=_SOURCE) if self._conn is not None else None

    # -- the batch ------------------------------------------------------------------------------------------------
    def write(self, p: Prepared, *, now: float) -> BatchOutcome:
        """Store a prepared batch in one transaction. Raises DatabaseDown when the connection is lost, and
        StorageError (the batch rolled back) when the database refuses the data."""
        self.connect()
        conn = self._conn
        assert conn is not None
        batch, rows = p.batch()
        try:
            if len(batch):  # before the batch's transaction reads amiflow.readings (see BatchWriter.ensure_partitions)
                assert self._writer is not None
                self._writer.ensure_partitions(batch.ts[self._in_window(batch.ts, now)])
            with conn.transaction():
                outcome = self._write(conn, p, batch, rows, now)
        except (psycopg.OperationalError, StorageError) as exc:
            self._forget()
            cause = exc if isinstance(exc, psycopg.Error) else exc.__cause__
            if (
                conn.closed
                or conn.broken
                or (
                    isinstance(cause, psycopg.OperationalError)
                    and not isinstance(cause, pg_errors.TransactionRollback)
                    and not self.ping()
                )
            ):
                self.close()
                raise DatabaseDown(f"database unavailable: {str(exc).strip()}") from exc
            raise StorageError(f"batch refused by the database: {str(exc).strip()}") from exc
        except psycopg.Error as exc:
            self._forget()
            raise StorageError(f"batch refused by the database: {str(exc).strip()}") from exc
        return outcome

    def _in_window(self, ts: npt.NDArray[np.int64], now: float) -> npt.NDArray[np.bool_]:
        """The rows validation can keep by time: a garbage time stamp (1970, 2099) makes no partition, let alone
        every partition between it and now."""
        too_old, future = self.bounds.window.outside(ts, int(now))
        inside: npt.NDArray[np.bool_] = ~(too_old | future)
        return inside

    def _write(
        self, conn: psycopg.Connection[Any], p: Prepared, batch: ReadingBatch, rows: npt.NDArray[np.int32], now: float
    ) -> BatchOutcome:
        quarantine = list(p.quarantine)
        known = self._resolve(conn, p, quarantine, now)
        rejected: dict[str, int] = {}
        flagged: dict[str, int] = {}
        result = WriteResult()
        if len(batch):
            batch, rows = self._drop_unknown(p, batch, rows, known, quarantine)
            batch = self._flag_unverified(batch)
            verdict = validate(
                batch, now_ts=int(now), bounds=self.bounds, last_register=self._registers.lookup(conn, batch)
            )
            flagged = verdict.flagged
            keep = verdict.keep
            if not keep.all():
                rejected = self._quarantine_rows(p, batch, rows, verdict.reason, quarantine)
            kept = batch.take(keep)
            kept = ReadingBatch(
                kept.meter, kept.obis, kept.ts, kept.value, verdict.quality[keep], kept.source, kept.unit
            )
            assert self._writer is not None
            result = self._writer.write(kept)
            self._registers.remember(kept)
        events = self._store_events(conn, p, known, quarantine)
        self._store_state(conn, p, known, now)
        if quarantine:
            quarantine_many(conn, ((_SOURCE, q.reason, q.meter, q.raw, q.detail) for q in quarantine))
        return BatchOutcome(result, events, quarantine, flagged, rejected)

    # -- meters ------------------------------------------------------------------------------------------------------
    def _resolve(
        self, conn: psycopg.Connection[Any], p: Prepared, quarantine: list[QuarantineRow], now: float
    ) -> set[str]:
        """Names of the batch's meters that are registered (registering unknown ones when the policy says so)."""
        names = sorted(p.seen)
        stale = [n for n in names if n not in self._meters or now - self._meters[n][2] > _METER_TTL_S]
        if stale:
            rows = conn.execute("SELECT name, id, status FROM amiflow.meters WHERE name = ANY(%s)", (stale,)).fetchall()
            for name, mid, status in rows:
                self._meters[name] = (mid, status, now)
            found = {r[0] for r in rows}
            missing = [n for n in stale if n not in found]
            for n in missing:
                self._meters.pop(n, None)
            if missing and self.policy == "register":
                self._register(conn, [n for n in missing if _valid_name(n)], p, now)
        return {n for n in names if n in self._meters}

    def _register(self, conn: psycopg.Connection[Any], names: list[str], p: Prepared, now: float) -> None:
        if not names:
            return
        protocols = [p.seen[n][1] for n in names]
        conn.execute(
            "INSERT INTO amiflow.meters (name, protocol, status, commissioning)"
            " SELECT n, pr, 'unverified', jsonb_build_object('auto_registered_by', 'mqtt ingest')"
            " FROM unnest(%s::text[], %s::text[]) AS v(n, pr) ON CONFLICT (name) DO NOTHING",
            (names, protocols),
        )
        rows = conn.execute("SELECT name, id, status FROM amiflow.meters WHERE name = ANY(%s)", (names,)).fetchall()
        for name, mid, status in rows:
            self._meters[name] = (mid, status, now)
        log.info("auto-registered %d unverified meter(s), e.g. %s", len(names), names[0])

    def _drop_unknown(
        self,
        p: Prepared,
        batch: ReadingBatch,
        rows: npt.NDArray[np.int32],
        known: set[str],
        quarantine: list[QuarantineRow],
    ) -> tuple[ReadingBatch, npt.NDArray[np.int32]]:
        unknown = {m for m in p.seen if m not in known}
        if not unknown:
            return batch, rows
        mask = _member(batch.meter, unknown)
        for i in np.unique(rows[mask]).tolist():
            msg = p.messages[i]
            meter = str(batch.meter[rows == i][0])
            reason = "unknown_meter" if _valid_name(meter) else "bad_meter_id"
            detail = json.dumps({"topic": msg.topic, "detail": f"meter {meter!r} is not registered"})
            quarantine.append(QuarantineRow(reason, meter, msg.payload, detail, int((rows == i).sum())))
        return batch.take(~mask), rows[~mask]

    def _flag_unverified(self, batch: ReadingBatch) -> ReadingBatch:
        unverified = {n for n, (_, status, _) in self._meters.items() if status == "unverified"}
        if not unverified:
            return batch
        mask = _member(batch.meter, unverified)
        if not mask.any():
            return batch
        quality = batch.quality.copy()
        quality[mask] |= int(QualityFlag.UNVERIFIED_METER)
        return ReadingBatch(batch.meter, batch.obis, batch.ts, batch.value, quality, batch.source, batch.unit)

    # -- validation helpers ---------------------------------------------------------------------------------------
    def _quarantine_rows(
        self,
        p: Prepared,
        batch: ReadingBatch,
        rows: npt.NDArray[np.int32],
        reason: npt.NDArray[np.object_],
        quarantine: list[QuarantineRow],
    ) -> dict[str, int]:
        counts: dict[str, int] = {}
        bad = np.nonzero(reason != "")[0]
        groups: dict[tuple[int, str], list[int]] = {}
        for j in bad.tolist():
            groups.setdefault((int(rows[j]), str(reason[j])), []).append(j)
        for (i, code), js in groups.items():
            msg = p.messages[i]
            detail = {
                "topic": msg.topic,
                "count": len(js),
                "readings": [
                    {"obis": str(batch.obis[j]), "ts": int(batch.ts[j]), "value": float(batch.value[j])}
                    for j in js[:20]
                ],
            }
            quarantine.append(QuarantineRow(code, str(batch.meter[js[0]]), msg.payload, json.dumps(detail), len(js)))
            counts[code] = counts.get(code, 0) + len(js)
        return counts

    # -- events and state ----------------------------------------------------------------------------------------
    def _store_events(
        self, conn: psycopg.Connection[Any], p: Prepared, known: set[str], quarantine: list[QuarantineRow]
    ) -> int:
        rows: list[tuple[int, MeterEvent]] = []
        dropped: set[int] = set()
        for i, e in p.events:
            if e.meter in known:
                rows.append((i, e))
            elif i not in dropped:
                dropped.add(i)
                msg = p.messages[i]
                detail = json.dumps({"topic": msg.topic, "detail": f"meter {e.meter!r} is not registered"})
                quarantine.append(QuarantineRow("unknown_meter", e.meter, msg.payload, detail))
        if not rows:
            return 0
        cur = conn.execute(
            "INSERT INTO amiflow.meter_events (meter_id, ts, code, detail, source)"
            " SELECT * FROM unnest(%s::int[], %s::timestamptz[], %s::text[], %s::jsonb[], %s::smallint[])"
            " ON CONFLICT (meter_id, ts, code) DO NOTHING",
            (
                [self._meters[e.meter][0] for _, e in rows],
                [_utc(e.ts) for _, e in rows],
                [e.code for _, e in rows],
                [Jsonb(e.detail) for _, e in rows],
                [1] * len(rows),
            ),
        )
        return max(cur.rowcount, 0)

    def _store_state(self, conn: psycopg.Connection[Any], p: Prepared, known: set[str], now: float) -> None:
        seen = sorted(
            (n, t)
            for n, (t, _) in p.seen.items()
            if n in known and now - self._seen_written.get(n, 0.0) > _SEEN_EVERY_S
        )
        if seen:
            conn.execute(
                "UPDATE amiflow.meters m SET last_seen_at = greatest(m.last_seen_at, v.t),"
                " state = CASE WHEN m.state = 'unknown' THEN 'online' ELSE m.state END"
                " FROM unnest(%s::text[], %s::timestamptz[]) AS v(name, t) WHERE m.name = v.name",
                ([n for n, _ in seen], [_utc(t) for _, t in seen]),
            )
            for n, _ in seen:
                self._seen_written[n] = now
        states = sorted((n, s, t) for n, (s, t) in p.states.items() if n in known)
        if states:
            conn.execute(
                "UPDATE amiflow.meters m SET state = v.state, state_at = v.t"
                " FROM unnest(%s::text[], %s::text[], %s::timestamptz[]) AS v(name, state, t)"
                " WHERE m.name = v.name AND (m.state_at IS NULL OR m.state_at <= v.t)",
                ([s[0] for s in states], [s[1] for s in states], [_utc(s[2]) for s in states]),
            )


def _member(names: npt.NDArray[np.object_], members: set[str]) -> npt.NDArray[np.bool_]:
    """``names`` in ``members``, row by row (a hash probe per row beats sorting object arrays)."""
    return np.fromiter((n in members for n in names.tolist()), dtype=bool, count=len(names))


def _valid_name(name: str) -> bool:
    return 0 < len(name) <= 64 and set(name) <= _VALID_NAME


def _utc(ts: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC)
