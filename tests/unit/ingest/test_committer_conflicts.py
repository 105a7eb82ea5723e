"""A batch rolled back by a deadlock with another worker (found by the chaos run, issue 17: two workers replaying
their spools created the same week's partition in opposite lock order) is written again whole, not message by
message - which took minutes for a batch of 1,345 messages and would quarantine a message as ``store_error`` if its
own write hit the conflict too. A refusal for the data's sake still goes message by message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from psycopg import errors as pg_errors

from amiflow.db.writer import WriteResult
from amiflow.errors import StorageError
from ingest.batch_store import BatchOutcome
from ingest.batching import Message, Prepared
from ingest.committer import Committer
from ingest.metrics import IngestMetrics
from ingest.spool import Spool


class ConflictingStore:
    """Rolls back the first ``conflicts`` writes as a deadlock would; then commits."""

    def __init__(self, conflicts: int, cause: type[Exception] = pg_errors.DeadlockDetected) -> None:
        self.conflicts = conflicts
        self.cause = cause
        self.writes: list[int] = []

    def write(self, p: Prepared, *, now: float) -> BatchOutcome:
        self.writes.append(len(p.messages))
        if len(self.writes) <= self.conflicts:
            try:
                raise self.cause("deadlock detected")
            except Exception as exc:
                raise StorageError(f"batch refused by the database: {exc}") from exc
        return BatchOutcome(WriteResult(inserted=len(p.messages)), 0, [], {}, {})


def _committer(store: Any, tmp_path: Path, acked: list[Message]) -> Committer:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    return Committer(store, spool, IngestMetrics(), ack=acked.extend, stopping=lambda: False)


def _batch(n: int) -> Prepared:
    return Prepared(messages=[Message(f"ami/v1/M{i}/readings", b"{}", 0.0, mid=i + 1) for i in range(n)])


def test_a_batch_rolled_back_by_a_deadlock_is_written_again_whole(tmp_path: Path) -> None:
    store, acked = ConflictingStore(conflicts=2), []
    _committer(store, tmp_path, acked).handle(_batch(50))
    assert store.writes == [50, 50, 50]  # twice rolled back, then committed whole: no message-by-message path
    assert len(acked) == 50


def test_a_refusal_that_is_no_conflict_still_goes_message_by_message(tmp_path: Path) -> None:
    store, acked = ConflictingStore(conflicts=1, cause=pg_errors.CheckViolation), []
    _committer(store, tmp_path, acked).handle(_batch(3))
    assert store.writes == [3, 1, 1, 1]
    assert len(acked) == 3
