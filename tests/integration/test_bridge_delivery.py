"""The dispatcher against the real billing receiver with seeded faults: 5xx, timeouts, 409s, delays, rejections."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from amiflow.db.outbox import enqueue
from amiflow_app.cli import main
from billing_bridge.delivery import canonical_body
from billing_bridge.dispatcher import DispatchConfig, Dispatcher, DispatchStats
from billing_bridge.receiver import Receiver, ReceiverConfig
from billing_bridge.sinks import Sink, WebhookSink
from billing_bridge.store import list_failed

SECRET = b"integration-secret"
FAST = {
    "lease_s": 3.0,
    "request_timeout_s": 0.5,
    "retry_base_s": 0.02,
    "retry_max_s": 0.3,
    "max_wait_s": 10.0,
    "poll_s": 0.1,
}
NOTICES = ("payment_reminder", "disconnect_warning", "disconnected", "reconnected")


def fill(url: str, n: int, accounts: int, prefix: str = "k") -> dict[str, tuple[int, str, dict[str, Any]]]:
    """Queue n bills and notices round-robin over accounts; returns key -> (id, account, payload as stored)."""
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            for i in range(n):
                account = f"ACC{i % accounts:04d}"
                kind = "bill" if i % 4 else NOTICES[(i // 4) % len(NOTICES)]
                payload = {
                    "bill_id": f"B{i}",
                    "account": account,
                    "total": f"{i}.{i % 100:02d}",
                    "type": kind,
                    "lines": [{"code": "energy", "amount": "1.10", "quantity": i * 0.25}],
                }
                enqueue(conn, kind=kind, idempotency_key=f"{prefix}{i}", payload=payload, account=account)
        rows = conn.execute("SELECT idempotency_key, id, account, payload FROM amiflow.outbox").fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def dispatch(url: str, sink: Sink, **config: Any) -> DispatchStats:
    return asyncio.run(Dispatcher(url, sink, DispatchConfig(**{**FAST, **config})).run())


def states(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT state, count(*) FROM amiflow.outbox GROUP BY state").fetchall())


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    config = getattr(request, "param", ReceiverConfig(SECRET))
    with Receiver(config) as rec:
        yield rec


FAULTY = ReceiverConfig(
    SECRET, seed=7, fail_rate=0.2, timeout_rate=0.05, conflict_rate=0.1, delay_max_s=0.02, hang_s=0.8
)


@pytest.mark.parametrize("receiver", [FAULTY], indirect=True)
def test_every_item_delivered_once_in_content_in_order_despite_faults(db_url: str, receiver: Receiver) -> None:
    items = fill(db_url, 400, accounts=80)
    stats = dispatch(db_url, WebhookSink(receiver.url, SECRET, concurrency=16, timeout_s=0.5), batch_size=50)

    assert states(db_url) == {"delivered": 400}
    assert stats.remaining is not None and stats.remaining.pending == 0
    snap = receiver.snapshot()
    # the faults really happened, so the checks below are not vacuous
    assert snap.statuses.get(503, 0) > 20 and snap.statuses.get(409, 0) > 10
    assert any(d.count > 1 for d in snap.deliveries.values()), "no timed-out request was stored late"
    # every item arrived, with exactly the stored content, signed (the receiver refuses bad signatures)
    assert set(snap.deliveries) == set(items)
    assert snap.conflicts == [] and snap.bad_signatures == 0 and snap.overlaps == []
    for key, (_, _, payload) in items.items():
        delivery = snap.deliveries[key]
        assert delivery.body == canonical_body(payload)
        assert delivery.path == ("/bills" if payload["type"] == "bill" else "/notices")
    # per account, items reached billing in outbox order
    by_account: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for key, (item_id, account, _) in items.items():
        by_account[account].append((item_id, key))
    position = {key: i for i, key in enumerate(snap.order)}
    for account, rows in by_account.items():
        assert [position[k] for _, k in sorted(rows)] == sorted(position[k] for _, k in rows), account


def test_rejections_are_kept_and_an_operator_requeues_them(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    items = fill(db_url, 60, accounts=60)
    with Receiver(ReceiverConfig(SECRET, seed=3, reject_rate=0.3)) as rec:
        stats = dispatch(db_url, WebhookSink(rec.url, SECRET, concurrency=8, timeout_s=0.5))
        with psycopg.connect(db_url) as conn:
            failed = list_failed(conn)
        assert stats.rejected == len(failed) > 5
        assert all(f.response_code == 400 and (f.last_error or "").startswith("HTTP 400") for f in failed)
        assert states(db_url) == {"delivered": 60 - len(failed), "rejected": len(failed)}
        # a rejected item stays rejected on a plain re-run
        dispatch(db_url, WebhookSink(rec.url, SECRET))
        assert states(db_url)["rejected"] == len(failed)

        monkeypatch.setenv("AMIFLOW_DATABASE_URL", db_url)
        monkeypatch.setenv("AMIFLOW_BILLING_URL", rec.url)
        monkeypatch.setenv("AMIFLOW_BILLING_SECRET", SECRET.decode())
        capsys.readouterr()
        assert main(["bridge", "failed"]) == 0
        listing = capsys.readouterr().out
        assert all(f.idempotency_key in listing for f in failed)
        assert main(["bridge", "retry", str(failed[0].id)]) == 0
        assert main(["bridge", "retry", str(failed[0].id)]) == 1  # no longer rejected: refused, nothing done
        assert main(["bridge", "retry", "--all"]) == 0
        assert main(["bridge", "run", "--timeout", "1", "--lease", "5"]) == 0
        assert "delivered" in capsys.readouterr().out
        assert states(db_url) == {"delivered": 60}
        snap = rec.snapshot()
    assert set(snap.deliveries) == set(items) and snap.conflicts == []
    for f in failed:
        assert snap.deliveries[f.idempotency_key].body == canonical_body(items[f.idempotency_key][2])


def test_a_wrong_secret_is_refused_by_billing_and_kept(db_url: str, receiver: Receiver) -> None:
    fill(db_url, 5, accounts=5)
    stats = dispatch(db_url, WebhookSink(receiver.url, b"not-the-secret"))
    assert stats.rejected == 5 and states(db_url) == {"rejected": 5}
    snap = receiver.snapshot()
    assert snap.bad_signatures == 5 and snap.deliveries == {}


def test_unreachable_billing_is_retried_with_backoff_and_nothing_lost(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    fill(db_url, 10, accounts=10)
    sink = WebhookSink("http://127.0.0.1:9", SECRET, timeout_s=0.5)  # discard port: connection refused
    with caplog.at_level("WARNING", logger="billing_bridge.dispatcher"):
        stats = dispatch(db_url, sink, max_wait_s=0.0, retry_base_s=30.0, retry_max_s=60.0)
    assert stats.retried == 10 and stats.delivered == 0
    # ten failures, one log line (the window is a minute), the count always kept
    assert len([r for r in caplog.records if "failed attempt" in r.getMessage()]) == 1
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT state, attempts, next_attempt_at - now() > interval '10 seconds', last_error FROM amiflow.outbox"
        ).fetchall()
    assert all(r[0] == "pending" and r[1] == 1 and r[2] for r in rows)
    assert all("ConnectError" in r[3] for r in rows)


def test_follow_delivers_items_queued_later(db_url: str, receiver: Receiver) -> None:
    config: dict[str, Any] = {**FAST, "follow": True, "poll_s": 5.0}

    async def scenario() -> DispatchStats:
        dispatcher = Dispatcher(db_url, WebhookSink(receiver.url, SECRET), DispatchConfig(**config))
        task = asyncio.create_task(dispatcher.run())
        await asyncio.sleep(0.5)
        await asyncio.to_thread(fill, db_url, 20, 20, "late")
        deadline = time.monotonic() + 10
        while len(receiver.snapshot().deliveries) < 20 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        dispatcher.stop()
        return await task

    stats = asyncio.run(scenario())
    assert stats.delivered == 20 and len(receiver.snapshot().deliveries) == 20


def test_file_drop_through_the_command(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    items = fill(db_url, 30, accounts=30)
    monkeypatch.setenv("AMIFLOW_DATABASE_URL", db_url)
    monkeypatch.delenv("AMIFLOW_BILLING_URL", raising=False)
    assert main(["bridge", "run", "--sink", "file", "--out", str(tmp_path / "drop")]) == 0
    lines = [json.loads(line) for f in sorted((tmp_path / "drop").iterdir()) for line in f.read_text().splitlines()]
    assert sorted(r["idempotency_key"] for r in lines) == sorted(items)
    assert all(r["payload"] == items[r["idempotency_key"]][2] for r in lines)
    assert states(db_url) == {"delivered": 30}


def test_without_a_billing_url_bills_stay_in_the_outbox(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fill(db_url, 3, accounts=3)
    monkeypatch.setenv("AMIFLOW_DATABASE_URL", db_url)
    monkeypatch.delenv("AMIFLOW_BILLING_URL", raising=False)
    assert main(["bridge", "run"]) == 2
    assert "AMIFLOW_BILLING_URL is not set" in capsys.readouterr().err
    assert states(db_url) == {"pending": 3}


def test_follow_survives_losing_its_database_connections(db_url: str, receiver: Receiver) -> None:
    config: dict[str, Any] = {**FAST, "follow": True, "poll_s": 0.2}

    def kill_backends() -> int:
        with psycopg.connect(db_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchall()
        return len(rows)

    async def wait_for(n: int) -> None:
        deadline = time.monotonic() + 15
        while len(receiver.snapshot().deliveries) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def scenario() -> DispatchStats:
        dispatcher = Dispatcher(db_url, WebhookSink(receiver.url, SECRET), DispatchConfig(**config))
        task = asyncio.create_task(dispatcher.run())
        await asyncio.to_thread(fill, db_url, 10, 10, "before")
        await wait_for(10)
        assert await asyncio.to_thread(kill_backends) >= 2  # the dispatcher's claim/settle/listen connections
        await asyncio.sleep(0.3)
        await asyncio.to_thread(fill, db_url, 10, 10, "after")
        await wait_for(20)
        dispatcher.stop()
        return await task

    stats = asyncio.run(scenario())
    assert stats.delivered == 20 and len(receiver.snapshot().deliveries) == 20
    assert states(db_url) == {"delivered": 20}


def test_cim_sink_through_the_command(db_url: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    import xml.etree.ElementTree as ET

    items = fill(db_url, 12, accounts=12)
    monkeypatch.setenv("AMIFLOW_DATABASE_URL", db_url)
    monkeypatch.setenv("AMIFLOW_BILLING_URL", receiver.url)
    monkeypatch.setenv("AMIFLOW_BILLING_SECRET", SECRET.decode())
    assert main(["bridge", "run", "--sink", "cim", "--timeout", "2", "--lease", "5"]) == 0
    snap = receiver.snapshot()
    assert set(snap.deliveries) == set(items) and snap.bad_signatures == 0
    paths = {key: d.path for key, d in snap.deliveries.items()}
    for key, (_, _, payload) in items.items():
        kind = payload["type"]
        expected = {
            "bill": "/cim/MeterReadings",
            "disconnected": "/cim/EndDeviceControls",
            "reconnected": "/cim/EndDeviceControls",
        }.get(kind, "/notices")
        assert paths[key] == expected, (key, kind)
        if expected.startswith("/cim/"):
            root = ET.fromstring(snap.deliveries[key].body)
            assert (
                root.findtext(
                    "{http://iec.ch/TC57/2011/schema/message}Header/{http://iec.ch/TC57/2011/schema/message}MessageID"
                )
                == key
            )


def test_items_whose_lease_runs_short_are_not_sent_and_keep_their_attempt(db_url: str) -> None:
    fill(db_url, 6, accounts=6)
    # one connection, up to 0.6 s per answer (seeded), 1 s of sending time per claim: some items must wait it out
    with Receiver(ReceiverConfig(SECRET, seed=1, delay_max_s=0.6)) as rec:
        sink = WebhookSink(rec.url, SECRET, concurrency=1, timeout_s=1.0)
        stats = dispatch(db_url, sink, lease_s=3.0, request_timeout_s=1.0, batch_size=6, batches_in_flight=1)
        snap = rec.snapshot()
    assert stats.not_sent > 0 and stats.delivered == 6
    assert snap.overlaps == [] and sorted({d.count for d in snap.deliveries.values()}) == [1]
    with psycopg.connect(db_url) as conn:
        attempts = conn.execute("SELECT max(attempts) FROM amiflow.outbox").fetchone()
    assert attempts == (1,)
