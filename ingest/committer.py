"""Commit-then-acknowledge: each prepared batch goes to the database, or to the durable spool while it is away.

A batch is acknowledged (the ``ack`` callback) only once it is durable: committed in one transaction, or fsync'd to
the spool. A batch the database refuses is stored message by message, and a message it still refuses is quarantined
as ``store_error``, so one poison message never blocks the stream. While the database is down it is probed every
few seconds; the spool is replayed, in order, before new batches once it answers. When the spool is full nothing is
acknowledged (the broker keeps the messages) and the metrics say so.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from psycopg import errors as pg_errors

from amiflow.errors import StorageError
from ingest.batch_store import BatchOutcome, DatabaseDown, IngestStore
from ingest.batching import BatchBuilder, Message, Prepared, QuarantineRow
from ingest.metrics import IngestMetrics
from ingest.spool import Spool, SpoolFull

__all__ = ["Committer"]

log = logging.getLogger(__name__)

_REPLAY_MESSAGES = 5000
_PROBE_EVERY_S = 2.0
_CONFLICT_RETRIES = 6  # a batch rolled back by a deadlock with another worker is written again, whole, this often


def _conflict(exc: BaseException | None) -> bool:
    """True when a deadlock or serialization failure (a rollback the database asks to retry) is behind ``exc``."""
    while exc is not None:
        if isinstance(exc, pg_errors.Error) and (exc.sqlstate or "").startswith("40"):  # class 40: rollback
            return True
        exc = exc.__cause__
    return False


class Committer:
    """Stores prepared batches through ``store``, spooling to ``spool`` while the database is down.

    ``ack`` acknowledges messages once they are durable; ``stopping`` tells when to give up waiting for spool space
    (the messages then stay unacknowledged). Batches are decoded with the worker's topic prefixes.
    """

    def __init__(
        self,
        store: IngestStore,
        spool: Spool,
        metrics: IngestMetrics,
        *,
        ack: Callable[[list[Message]], None],
        stopping: Callable[[], bool],
        prefix: str = "ami/v1",
        tasmota_prefix: str = "tele",
    ) -> None:
        self.store = store
        self.spool = spool
        self.metrics = metrics
        self._ack = ack
        self._stopping = stopping
        self._prefix = prefix
        self._tasmota_prefix = tasmota_prefix
        self._db_up = True
        self._next_probe = 0.0
        self._spool_alarm = False

    def _builder(self) -> BatchBuilder:
        return BatchBuilder(prefix=self._prefix, tasmota_prefix=self._tasmota_prefix)

    def _may_try_db(self) -> bool:
        return self._db_up or time.monotonic() >= self._next_probe

    def handle(self, p: Prepared) -> None:
        """Make ``p`` durable (database, else spool) and acknowledge it; waits while the spool is full."""
        while True:
            if self._may_try_db() and self._store(p):
                self._clear_alarm()
                self._ack(p.messages)
                return
            try:
                self.spool.append((m.topic, m.payload, m.received_at) for m in p.messages)
            except SpoolFull as exc:
                self._alarm(str(exc))
                if self._stopping():
                    return  # unacknowledged: the broker keeps them for this session
                time.sleep(0.5)
                continue
            except StorageError as exc:
                log.error("%s; messages stay unacknowledged", exc)
                time.sleep(0.5)
                if self._stopping():
                    return
                continue
            self._clear_alarm()
            self.metrics.add(messages_spooled=len(p.messages))
            self.metrics.spool_bytes = self.spool.pending_bytes
            self._ack(p.messages)
            return

    def replay(self) -> bool:
        """Replay a chunk of the spool when the database may be up; True if something was replayed."""
        if not (self.spool and self._may_try_db()):
            return False
        records = self.spool.read(_REPLAY_MESSAGES)
        if not records:
            return False
        b = self._builder()
        for r in records:
            b.add(Message(r.topic, r.payload, r.received_at))
        if not self._store(b.take()):
            return False
        self.spool.commit(records[-1].position)
        self.metrics.add(messages_replayed=len(records))
        self.metrics.spool_bytes = self.spool.pending_bytes
        if not self.spool:
            log.info("spool replayed completely")
        return True

    def _write(self, p: Prepared) -> BatchOutcome:
        """``store.write``, again after a short random pause when another writer's lock order rolled it back (two
        workers creating the same week's partition deadlock: that is no fault of the batch's data)."""
        for attempt in range(_CONFLICT_RETRIES):
            try:
                return self.store.write(p, now=time.time())
            except DatabaseDown:
                raise
            except StorageError as exc:
                if not _conflict(exc):
                    raise
                log.warning("batch of %d messages rolled back by a conflict; writing it again", len(p.messages))
                time.sleep(random.uniform(0.02, 0.1) * 2**attempt)
        return self.store.write(p, now=time.time())

    def _store(self, p: Prepared) -> bool:
        """Write ``p``; True once committed (or its messages quarantined one by one), False when the DB is down."""
        try:
            outcome = self._write(p)
        except DatabaseDown as exc:
            self._down(exc)
            return False
        except StorageError as exc:
            log.error("%s; storing the batch's %d messages one at a time", exc, len(p.messages))
            return self._one_by_one(p)
        self._up()
        self._count(p, outcome)
        return True

    def _one_by_one(self, p: Prepared) -> bool:
        for m in p.messages:
            b = self._builder()
            b.add(m)
            single = b.take()
            try:
                self._count(single, self._write(single))
                continue
            except DatabaseDown as exc:
                self._down(exc)
                return False
            except StorageError as exc:
                err = str(exc)
            poison = Prepared(messages=[m], quarantine=[QuarantineRow("store_error", None, m.payload, err[:2000])])
            try:
                self._count(poison, self.store.write(poison, now=time.time()))
            except StorageError as exc2:
                self._down(exc2)
                return False
        return True

    def _count(self, p: Prepared, o: BatchOutcome) -> None:
        m = self.metrics
        m.add(
            readings_stored=o.written.inserted,
            readings_duplicate=o.written.duplicates,
            readings_conflict=o.written.conflicts,
            events_stored=o.events,
            batches_committed=1,
        )
        for q in o.quarantined:
            m.count_reason("quarantined_messages", q.reason)
            if q.readings:
                m.count_reason("quarantined_readings", q.reason, q.readings)
        if o.written.quarantined:
            m.count_reason("quarantined_readings", "writer", o.written.quarantined)
        for reason, n in o.flagged.items():
            m.count_reason("flagged_readings", reason, n)
        now = time.monotonic()
        m.observe_lag([now - msg.t_mono for msg in p.messages if msg.t_mono])
        m.last_commit_at = time.time()

    def _down(self, exc: Exception) -> None:
        if self._db_up:
            log.error("%s; spooling to %s until it returns", exc, self.spool.directory)
        self._db_up = False
        self.metrics.db_available = False
        self._next_probe = time.monotonic() + _PROBE_EVERY_S

    def _up(self) -> None:
        if not self._db_up:
            log.info("database available again")
        self._db_up = True
        self.metrics.db_available = True

    def _clear_alarm(self) -> None:
        if self._spool_alarm:
            log.warning("spool accepts messages again (%d bytes pending)", self.spool.pending_bytes)
        self._spool_alarm = False
        self.metrics.spool_full = False

    def _alarm(self, text: str) -> None:
        self.metrics.spool_full = True
        if not self._spool_alarm:
            log.critical("%s", text)
            self._spool_alarm = True
