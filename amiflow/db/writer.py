"""The batch writer: columnar readings into ``amiflow.readings`` with exactly-once semantics, at COPY speed.

Design (ARCHITECTURE.md, limits table): a staging table + ``INSERT ... ON CONFLICT`` costs half of a plain binary
COPY, so conflicts are handled only where they can occur:

1. meters and OBIS codes are resolved to ids through per-writer caches (amiflow.db.resolve: unknown meters are
   quarantined, unknown channels created), non-finite values are quarantined;
2. the batch is sorted by (meter, channel, ts) (COPY of meter-sorted rows is ~2x faster) and duplicates inside the
   batch are removed in numpy: same value = duplicate, different value = conflict (kept in reading_conflicts);
3. one backward index probe per (meter, channel) run finds the newest stored reading within the run's time span;
   rows after it go straight in by binary COPY, only the rows at or before it through the staging table and
   ``ON CONFLICT DO NOTHING``, with stored-vs-new conflicts recorded;
4. the days written are share-locked against the packer and packed days among them invalidated
   (amiflow.db.packing), so the read-optimised packs never disagree with the rows;
5. if a concurrent writer wins a race and the optimistic COPY hits the unique key, that COPY is rolled back to its
   savepoint and its rows take the staging path.

Everything of one ``write`` is one transaction: after it returns, the batch is durable (the point at which a source
may be acknowledged).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import errors as pg_errors

from amiflow.db.binary_copy import PG_EPOCH_S, encode_rows
from amiflow.db.quarantine import quarantine_many
from amiflow.db.resolve import IdResolver
from amiflow.errors import StorageError
from amiflow.types import ReadingBatch

__all__ = ["BatchWriter", "WriteResult"]

log = logging.getLogger(__name__)

FIELDS = (
    ("meter_id", "i4"),
    ("channel_id", "i2"),
    ("ts", "i8"),
    ("value", "f8"),
    ("quality", "i4"),
    ("source", "i2"),
)
_COLS = "meter_id, channel_id, ts, value, quality, source"
_PROBE_AFTER_MISS = 16  # batches probed first after an unprobed COPY hit a stored row
_REL_TOL = 1e-9  # values equal within this relative tolerance are the same reading (unit conversions round)


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Counts of one write: every reading of the batch is in exactly one of the first four."""

    inserted: int = 0
    duplicates: int = 0
    conflicts: int = 0
    quarantined: int = 0
    channels_created: int = 0

    def __add__(self, other: WriteResult) -> WriteResult:
        return WriteResult(
            self.inserted + other.inserted,
            self.duplicates + other.duplicates,
            self.conflicts + other.conflicts,
            self.quarantined + other.quarantined,
            self.channels_created + other.channels_created,
        )


def _array_literal(values: npt.NDArray[np.integer[Any]]) -> str:
    """A PostgreSQL array literal: much cheaper to send than a list adapted element by element."""
    return "{" + ",".join(map(str, values.tolist())) + "}"


def _same(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    scale = np.maximum(np.maximum(np.abs(a), np.abs(b)), 1.0)
    return np.asarray(np.abs(a - b) <= _REL_TOL * scale)


class BatchWriter:
    """Writes :class:`ReadingBatch` es through one autocommit connection (one writer per connection)."""

    def __init__(self, conn: psycopg.Connection[Any], *, source_name: str = "writer") -> None:
        self._conn = conn
        self._source_name = source_name
        self._ids = IdResolver(conn)
        self._width_s: int | None = None  # native partition width; 0 = TimescaleDB (no partitions to make)
        self._partitions: set[int] = set()
        self._stage_ready = False
        self._clean_batches = 0  # > 0: batches since one that overlapped stored rows; the probe is skipped then

    def ensure_partitions(self, ts: npt.NDArray[np.int64]) -> None:
        """Create the partitions readings at ``ts`` go to (once per writer; a no-op on TimescaleDB). A caller that
        writes inside a transaction of its own calls this before that transaction touches ``amiflow.readings``:
        creating a partition locks the parent table, and a transaction that already holds a lock on it while it waits
        for another writer's partition (the advisory lock) deadlocks with that writer."""
        self._ensure_partitions(ts)

    def _ensure_partitions(self, ts: npt.NDArray[np.int64]) -> None:
        if self._width_s is None:
            row = self._conn.execute(
                "SELECT (SELECT value FROM amiflow.storage_config WHERE key = 'backend'),"
                " extract(epoch FROM (SELECT value::interval FROM amiflow.storage_config"
                " WHERE key = 'chunk_interval'))::bigint"
            ).fetchone()
            assert row is not None
            self._width_s = 0 if row[0] == "timescaledb" else int(row[1])
        if not self._width_s or not len(ts):
            return
        needed = set(np.unique(ts // self._width_s).tolist()) - self._partitions
        if needed:
            lo, hi = min(needed) * self._width_s, max(needed) * self._width_s
            self._conn.execute("SELECT amiflow.ensure_partitions(to_timestamp(%s), to_timestamp(%s))", (lo, hi))
            self._partitions |= needed

    # -- the write --------------------------------------------------------------------------------------------
    def write(self, batch: ReadingBatch) -> WriteResult:
        """Store the batch in one transaction; returns the counts. Raises StorageError if the database fails."""
        if len(batch) == 0:
            return WriteResult()
        try:
            return self._write(batch)
        except psycopg.OperationalError as exc:
            raise StorageError(f"database unavailable while writing readings: {str(exc).strip()}") from exc
        except psycopg.Error as exc:
            raise StorageError(f"writing readings failed: {str(exc).strip()}") from exc

    def _write(self, batch: ReadingBatch) -> WriteResult:
        meter_ids = self._ids.meters(batch.meter)
        channel_ids, created, bad_obis = self._ids.channels(batch.obis, batch.unit)
        finite = np.isfinite(batch.value)
        good = (meter_ids >= 0) & ~bad_obis & finite
        self._ensure_partitions(batch.ts[good] if not good.all() else batch.ts)
        every = bool(good.all())
        with self._conn.transaction():
            quarantined = self._quarantine_rejects(batch, meter_ids, bad_obis, finite) if not every else 0
            cols = (meter_ids, channel_ids, batch.ts, batch.value, batch.quality, batch.source)
            result = self._store(*(cols if every else (c[good] for c in cols)))
        return WriteResult(result.inserted, result.duplicates, result.conflicts, quarantined, created)

    def _quarantine_rejects(
        self,
        batch: ReadingBatch,
        meter_ids: npt.NDArray[np.int32],
        bad_obis: npt.NDArray[np.bool_],
        finite: npt.NDArray[np.bool_],
    ) -> int:
        reasons = np.where(meter_ids < 0, 1, np.where(bad_obis, 2, np.where(~finite, 3, 0)))
        names = {1: "unknown_meter", 2: "bad_obis", 3: "not_finite"}
        records = []
        for code, reason in names.items():
            rows = np.nonzero(reasons == code)[0]
            groups: dict[str, list[int]] = {}
            for i in rows.tolist():
                groups.setdefault(str(batch.meter[i]), []).append(i)
            for meter, idx in groups.items():
                payload = {
                    "meter": meter,
                    "readings": [
                        {
                            "obis": str(batch.obis[i]),
                            "ts": int(batch.ts[i]),
                            "value": float(batch.value[i]) if np.isfinite(batch.value[i]) else str(batch.value[i]),
                            "unit": str(batch.unit[i]),
                        }
                        for i in idx
                    ],
                }
                detail = f"{len(idx)} reading(s) rejected by the writer: {reason}"
                records.append((self._source_name, reason, meter, json.dumps(payload).encode(), detail))
        quarantine_many(self._conn, records)
        return int((reasons > 0).sum())

    def _store(
        self,
        mid: npt.NDArray[np.int32],
        ch: npt.NDArray[np.int16],
        ts: npt.NDArray[np.int64],
        val: npt.NDArray[np.float64],
        q: npt.NDArray[np.int32],
        src: npt.NDArray[np.int16],
    ) -> WriteResult:
        if not len(ts):
            return WriteResult()
        order = np.lexsort((ts, ch, mid))  # stable: the first arrival of a key is the one kept
        mid, ch, ts, val, q, src = mid[order], ch[order], ts[order], val[order], q[order], src[order]
        same_key = np.zeros(len(ts), dtype=bool)
        same_key[1:] = (mid[1:] == mid[:-1]) & (ch[1:] == ch[:-1]) & (ts[1:] == ts[:-1])
        duplicates = conflicts = 0
        if same_key.any():
            first = np.maximum.accumulate(np.where(same_key, 0, np.arange(len(ts))))
            later = np.nonzero(same_key)[0]
            equal = _same(val[later], val[first[later]])
            duplicates += int(equal.sum())
            clash = later[~equal]
            if len(clash):
                conflicts += self._record_conflicts(
                    mid[clash], ch[clash], ts[clash], val[first[clash]], val[clash], q[clash], src[clash]
                )
            keep = ~same_key
            mid, ch, ts, val, q, src = mid[keep], ch[keep], ts[keep], val[keep], q[keep], src[keep]
        cols: dict[str, npt.NDArray[Any]] = {
            "meter_id": mid,
            "channel_id": ch,
            "ts": (ts - PG_EPOCH_S) * 1_000_000,
            "value": val,
            "quality": q,
            "source": src,
        }
        starts = np.flatnonzero(np.r_[True, (mid[1:] != mid[:-1]) | (ch[1:] != ch[:-1])])
        ends = np.r_[starts[1:], len(ts)]
        self._guard_packs(mid, ch, ts, starts, ends)
        inserted, overlap = self._copy_new(cols, mid, ch, ts, starts, ends)
        if overlap.any():
            staged = {k: v[overlap] for k, v in cols.items()}
            ins, dup, con = self._stage_insert(staged)
            inserted, duplicates, conflicts = inserted + ins, duplicates + dup, conflicts + con
        return WriteResult(inserted, duplicates, conflicts)

    def _copy_new(
        self, cols: dict[str, npt.NDArray[Any]], mid: Any, ch: Any, ts: npt.NDArray[np.int64], starts: Any, ends: Any
    ) -> tuple[int, npt.NDArray[np.bool_]]:
        """COPY the rows that cannot be stored yet; returns (rows inserted, mask of the rows left for staging).

        After a batch in which nothing was stored before, the next one skips the probe and is COPY'd whole: the
        unique key refuses it if a row was there after all, and then that batch is probed and split (and the next
        ``_PROBE_AFTER_MISS`` batches are probed first), so a clean stream pays no probe and a stream of re-sends
        pays no failed COPY. A probed batch whose COPY still hits the key lost a race with another writer: all of
        its rows take the staging path."""
        probed = self._clean_batches <= 0
        overlap = self._overlapping_rows(mid, ch, ts, starts, ends) if probed else np.zeros(len(ts), dtype=bool)
        while not overlap.all():
            fresh = {k: v[~overlap] for k, v in cols.items()} if overlap.any() else cols
            try:
                with (
                    self._conn.transaction(),
                    self._conn.cursor() as cur,
                    cur.copy(f"COPY amiflow.readings ({_COLS}) FROM STDIN (FORMAT BINARY)") as copy,
                ):
                    for block in encode_rows(FIELDS, fresh):
                        copy.write(block)
            except pg_errors.UniqueViolation:
                if probed:
                    log.info("optimistic COPY lost a race with another writer; taking the staging path")
                    overlap[:] = True
                    break
                probed, self._clean_batches = True, -_PROBE_AFTER_MISS
                overlap = self._overlapping_rows(mid, ch, ts, starts, ends)
                continue
            self._clean_batches = self._clean_batches + 1 if not overlap.any() else min(self._clean_batches, 0)
            return len(fresh["ts"]), overlap
        self._clean_batches = min(self._clean_batches, 0)
        return 0, overlap

    def _guard_packs(self, mid: Any, ch: Any, ts: npt.NDArray[np.int64], starts: Any, ends: Any) -> None:
        """Share-lock the UTC days written (the packer locks a day exclusively while it packs it) and, where a day is
        packed already, drop the packs of the runs written and mark them dirty (``amiflow.pack_guard``, migration
        0013): packed days stay exactly what ``amiflow.readings`` holds."""
        days = np.unique((ts - 1) // 86_400)
        self._conn.execute(
            "SELECT amiflow.pack_guard(%s::int4[], %s::int4[], %s::int2[], %s::int8[], %s::int8[])",
            (
                _array_literal(days),
                _array_literal(mid[starts]),
                _array_literal(ch[starts]),
                _array_literal(ts[starts]),
                _array_literal(ts[ends - 1]),
            ),
        )

    def _overlapping_rows(
        self, mid: npt.NDArray[np.int32], ch: npt.NDArray[np.int16], ts: npt.NDArray[np.int64], starts: Any, ends: Any
    ) -> npt.NDArray[np.bool_]:
        """True for the rows that may already be stored: per (meter, channel) run, one backward index probe finds the
        newest stored reading within the run's span; only rows at or before it can be duplicates or conflicts (the
        usual re-send is of older intervals, while the new ones are newer than anything stored)."""
        rows = self._conn.execute(
            "SELECT g.i, s.newest FROM unnest(%s::int4[], %s::int2[], %s::int8[], %s::int8[]) WITH ORDINALITY"
            " AS g(m, c, lo, hi, i) CROSS JOIN LATERAL (SELECT floor(extract(epoch FROM max(r.ts)))::int8 AS newest"
            " FROM amiflow.readings r WHERE r.meter_id = g.m AND r.channel_id = g.c"
            " AND r.ts BETWEEN to_timestamp(g.lo) AND to_timestamp(g.hi)) s WHERE s.newest IS NOT NULL",
            (
                _array_literal(mid[starts]),
                _array_literal(ch[starts]),
                _array_literal(ts[starts]),
                _array_literal(ts[ends - 1]),
            ),
        ).fetchall()
        newest = np.full(len(starts), np.iinfo(np.int64).min, dtype=np.int64)
        if rows:
            newest[np.asarray([r[0] for r in rows], dtype=np.int64) - 1] = [r[1] for r in rows]
        return np.asarray(ts <= np.repeat(newest, ends - starts))

    def _stage_insert(self, cols: dict[str, npt.NDArray[Any]]) -> tuple[int, int, int]:
        if not self._stage_ready:
            self._conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS _amiflow_stage (meter_id int4, channel_id int2, ts timestamptz,"
                " value float8, quality int4, source int2) ON COMMIT DELETE ROWS"
            )
            self._stage_ready = True
        with self._conn.cursor() as cur:
            with cur.copy(f"COPY _amiflow_stage ({_COLS}) FROM STDIN (FORMAT BINARY)") as copy:
                for block in encode_rows(FIELDS, cols):
                    copy.write(block)
            cur.execute(
                f"WITH ins AS (INSERT INTO amiflow.readings ({_COLS}) SELECT {_COLS} FROM _amiflow_stage"
                " ON CONFLICT (meter_id, channel_id, ts) DO NOTHING RETURNING 1) SELECT count(*) FROM ins"
            )
            inserted = int(cur.fetchone()[0])  # type: ignore[index]
            cur.execute(
                "WITH c AS (INSERT INTO amiflow.reading_conflicts"
                " (meter_id, channel_id, ts, stored_value, new_value, new_quality, source)"
                " SELECT s.meter_id, s.channel_id, s.ts, r.value, s.value, s.quality, s.source"
                " FROM _amiflow_stage s JOIN amiflow.readings r USING (meter_id, channel_id, ts)"
                " WHERE abs(r.value - s.value) > %s * greatest(abs(r.value), abs(s.value), 1)"
                " RETURNING 1) SELECT count(*) FROM c",
                (_REL_TOL,),
            )
            conflicts = int(cur.fetchone()[0])  # type: ignore[index]
            cur.execute("TRUNCATE _amiflow_stage")
        staged = len(cols["ts"])
        return inserted, staged - inserted - conflicts, conflicts

    def _record_conflicts(self, mid: Any, ch: Any, ts: Any, stored: Any, new: Any, q: Any, src: Any) -> int:
        with (
            self._conn.cursor() as cur,
            cur.copy(
                "COPY amiflow.reading_conflicts"
                " (meter_id, channel_id, ts, stored_value, new_value, new_quality, source) FROM STDIN"
            ) as copy,
        ):
            for row in zip(
                mid.tolist(),
                ch.tolist(),
                ts.tolist(),
                stored.tolist(),
                new.tolist(),
                q.tolist(),
                src.tolist(),
                strict=True,
            ):
                copy.write_row((row[0], row[1], _iso(row[2]), *row[3:]))
        return len(ts)


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()
