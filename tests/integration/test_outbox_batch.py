"""The batch form of the outbox (what the billing run queues a block's bills with) keeps the one-by-one contract:
order, at most once per key, a re-run is a no-op, the same key with other content is refused."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from amiflow.db.outbox import enqueue, enqueue_many
from amiflow.errors import StorageError


def _rows(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT idempotency_key, account, payload FROM amiflow.outbox ORDER BY id").fetchall()


def test_a_batch_is_queued_in_order_once(db_conn: psycopg.Connection[Any]) -> None:
    items = [(f"k{i}", {"bill_id": f"B{i}", "n": i}, f"A{i % 2}") for i in (3, 1, 2)]
    assert enqueue_many(db_conn, kind="bill", items=items) == 3
    assert _rows(db_conn) == [(k, a, p) for k, p, a in items]
    assert enqueue_many(db_conn, kind="bill", items=items[1:]) == 0  # a re-run: nothing new
    enqueue(db_conn, kind="bill", idempotency_key="k4", payload={"bill_id": "B4"})
    more = [("k4", {"bill_id": "B4"}, None), ("k5", {"bill_id": "B5"}, None), ("k5", {"bill_id": "B5"}, None)]
    assert enqueue_many(db_conn, kind="bill", items=more) == 1  # k4 queued before, k5 once
    assert [r[0] for r in _rows(db_conn)] == ["k3", "k1", "k2", "k4", "k5"]
    assert enqueue_many(db_conn, kind="bill", items=[]) == 0


def test_the_same_key_with_other_content_is_refused(db_conn: psycopg.Connection[Any]) -> None:
    enqueue_many(db_conn, kind="bill", items=[("k1", {"total": "1.00"}, "A")])
    with pytest.raises(StorageError, match="'k1' is already queued with different content"), db_conn.transaction():
        enqueue_many(db_conn, kind="bill", items=[("k2", {"total": "2.00"}, "A"), ("k1", {"total": "9.99"}, "A")])
    assert [r[0] for r in _rows(db_conn)] == ["k1"]  # the caller's transaction rolled k2 back too
    with pytest.raises(StorageError, match="'k3' is already queued"), db_conn.transaction():
        enqueue_many(db_conn, kind="bill", items=[("k3", {"a": 1}, None), ("k3", {"a": 2}, None)])
