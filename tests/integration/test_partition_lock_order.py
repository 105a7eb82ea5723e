"""An ingest batch creates the partitions it needs before its transaction touches ``amiflow.readings``.

Creating a partition locks the parent table exclusively. A batch transaction that had already read the readings
(the last stored registers, for the monotonic check) held a lock on the parent while it waited for another worker's
partition (``ensure_partitions``' advisory lock), and that worker, waiting for the parent, deadlocked with it: one
of them was rolled back and written again (the chaos run saw it; docs/reliability.md). Now the partition is made
first, in its own short transaction, so a worker waiting to create one holds no lock on the readings."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg

from amiflow.db.registry import MeterRecord, add_meter
from ingest.batch_store import IngestStore
from ingest.batching import BatchBuilder, Message
from ingest.testing import readings_payload, wait_for
from ingest.validate import Bounds


def test_a_batch_waiting_for_its_new_partition_holds_no_lock_on_the_readings(
    db_url: str, db_conn: psycopg.Connection[Any]
) -> None:
    add_meter(db_conn, MeterRecord(name="P01", protocol="mqtt"))
    start = (int(time.time()) // 86400 - 200) * 86400  # 200 days ago: inside the horizon, no partition made ahead
    builder = BatchBuilder(prefix="pl/v1")
    for obis in ("1-0:1.29.0", "1-0:1.8.0"):  # a register: validation looks up the last stored one
        builder.add(Message("pl/v1/P01/readings", readings_payload("P01", start, 4, obis=obis), time.time()))
    prepared = builder.take()
    store = IngestStore(db_url, bounds=Bounds())
    outcome: list[Any] = []
    with psycopg.connect(db_url) as reader:  # a report in the middle of its read of the readings
        reader.execute("LOCK TABLE amiflow.readings IN ACCESS SHARE MODE")
        writer = threading.Thread(target=lambda: outcome.append(store.write(prepared, now=time.time())))
        writer.start()

        def waiting() -> list[tuple[Any, ...]]:
            return reader.execute(
                "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE NOT l.granted AND a.datname = current_database() AND l.pid <> pg_backend_pid()"
            ).fetchall()

        assert wait_for(lambda: bool(waiting()), 20), "the batch did not wait for its partition"
        pid = waiting()[0][0]
        query = reader.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
        assert query is not None and "ensure_partitions" in query[0], query
        held = reader.execute(
            "SELECT DISTINCT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE l.pid = %s AND l.granted AND n.nspname = 'amiflow' AND c.relname NOT LIKE 'readings%%'"
            " AND c.relname NOT LIKE 'storage_config%%'",
            (pid,),
        ).fetchall()
        # the batch's own statements (its meters, their last registers) have not run yet: the statement making the
        # partition is in a transaction of its own, which holds no lock taken before it
        assert held == [], f"the partition is made inside the batch's transaction (holding {held}): a deadlock"
        reader.rollback()  # the report ends: the partition is made, the batch goes on
        writer.join(30)
    assert not writer.is_alive() and outcome, "the batch did not finish"
    assert outcome[0].written.inserted == 8 and not outcome[0].quarantined  # 4 readings of each series
    store.close()
