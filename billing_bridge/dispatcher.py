"""The outbox dispatcher: claim batches with a lease, deliver them through a sink concurrently, settle in bulk.

Several batches are in flight at once (each one claim transaction, one sink call with concurrent requests, one settle
transaction), so the sink's request pool stays busy while the database round trips overlap. Without ``follow`` the
run ends when the outbox holds nothing pending, or when the only pending items are backing off for longer than
``max_wait_s`` (they stay queued for the next run); with ``follow`` it waits for NOTIFY ``amiflow_outbox`` (or polls).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from amiflow.errors import ConfigError, StorageError
from amiflow.settings import Settings
from billing_bridge.delivery import OutboxItem, Outcome, Verdict, backoff_s
from billing_bridge.sinks import Sink, make_sink
from billing_bridge.store import OutboxCounts, claim, counts, next_due_in_s, settle

__all__ = ["DispatchConfig", "DispatchStats", "Dispatcher", "build_dispatcher"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DispatchConfig:
    """How a dispatcher claims, paces and retries. ``lease_s`` must exceed the sink's request timeout."""

    batch_size: int = 200
    batches_in_flight: int = 4
    lease_s: float = 60.0
    request_timeout_s: float = 10.0
    retry_base_s: float = 1.0
    retry_max_s: float = 3600.0
    follow: bool = False
    max_wait_s: float = 60.0
    poll_s: float = 1.0
    fault_log_window_s: float = 60.0
    channel: str = "billing"  # which outbox rows: billing (webhook, cim, file sinks) or email (e-bills)
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")

    def __post_init__(self) -> None:
        if self.lease_s < self.request_timeout_s + 2.0:
            raise ConfigError(
                f"bridge lease ({self.lease_s:g} s) must exceed the request timeout ({self.request_timeout_s:g} s)"
                " by at least 2 s, or another dispatcher could send an item while a request is still open"
            )
        if self.batch_size < 1 or self.batches_in_flight < 1:
            raise ConfigError("bridge batch size and batches in flight must be at least 1")


@dataclass(slots=True)
class DispatchStats:
    """Counts of one dispatcher run; ``remaining`` is the outbox state when it stopped."""

    claimed: int = 0
    delivered: int = 0
    rejected: int = 0
    retried: int = 0
    not_sent: int = 0
    lost_leases: int = 0
    remaining: OutboxCounts | None = None


class Dispatcher:
    """Deliver the outbox at ``url`` through ``sink``. Constructing it connects nothing; ``run()`` does the work."""

    def __init__(self, url: str, sink: Sink, config: DispatchConfig, *, rng: random.Random | None = None) -> None:
        self.url = url
        self.sink = sink
        self.config = config
        self.stats = DispatchStats()
        self._rng = rng or random.Random()
        self._stopping = asyncio.Event()
        self._settle_lock = asyncio.Lock()
        self._fault_logged_at = float("-inf")
        self._faults_in_window = 0

    def stop(self) -> None:
        """Stop claiming; in-flight batches finish and are settled before ``run()`` returns."""
        self._stopping.set()

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        try:
            return await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        except psycopg.OperationalError as exc:
            raise StorageError(f"cannot connect to the database: {str(exc).strip()}") from exc

    async def run(self) -> DispatchStats:
        """Dispatch until drained (or until ``stop()`` when following); returns the run's counts.

        Without ``follow`` a database failure raises StorageError. With ``follow`` (a service) the dispatcher
        reconnects with backoff (1 s doubling to 60 s) until stopped; items claimed before the failure are
        re-claimed by whoever holds the outbox when their lease expires.
        """
        if not self.config.follow:
            return await self._session()
        delay = 1.0
        while not self._stopping.is_set():
            try:
                return await self._session()
            except StorageError as exc:
                log.warning("bridge: %s; reconnecting in %.0f s", exc, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                delay = min(delay * 2, 60.0)
        return self.stats

    async def _session(self) -> DispatchStats:
        async with contextlib.AsyncExitStack() as stack:
            try:
                claim_conn = await stack.enter_async_context(await self._connect())
                settle_conn = await stack.enter_async_context(await self._connect())
                listen_conn = None
                if self.config.follow:
                    listen_conn = await stack.enter_async_context(await self._connect())
                    await listen_conn.execute("LISTEN amiflow_outbox")
                async with self.sink:
                    await self._loop(claim_conn, settle_conn, listen_conn)
                self.stats.remaining = await counts(claim_conn, self.config.channel)
            except psycopg.Error as exc:
                raise StorageError(f"bridge dispatcher: database error: {str(exc).strip()}") from exc
        return self.stats

    async def _loop(
        self,
        claim_conn: psycopg.AsyncConnection[Any],
        settle_conn: psycopg.AsyncConnection[Any],
        listen_conn: psycopg.AsyncConnection[Any] | None,
    ) -> None:
        cfg = self.config
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                exhausted = False
                while len(tasks) < cfg.batches_in_flight and not self._stopping.is_set():
                    loop = asyncio.get_running_loop()
                    send_before = loop.time() + cfg.lease_s - cfg.request_timeout_s - 1.0
                    items = await claim(
                        claim_conn, limit=cfg.batch_size, lease_s=cfg.lease_s, worker=cfg.worker, sink=self.sink.name,
                        channel=cfg.channel,
                    )  # fmt: skip
                    if items:
                        self.stats.claimed += len(items)
                        tasks.add(asyncio.create_task(self._batch(items, send_before, settle_conn)))
                    if len(items) < cfg.batch_size:
                        exhausted = True
                        break
                if tasks:
                    done, _ = await asyncio.wait(
                        tasks, timeout=cfg.poll_s if exhausted else None, return_when=asyncio.FIRST_COMPLETED
                    )
                    for task in done:
                        tasks.discard(task)
                        task.result()
                    continue
                if self._stopping.is_set():
                    return
                due = await next_due_in_s(claim_conn, cfg.channel)
                if not cfg.follow and (due is None or due > cfg.max_wait_s):
                    return
                wait = cfg.poll_s if due is None else min(max(due, 0.01), cfg.poll_s)
                await self._idle(listen_conn, wait)
        finally:
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _idle(self, listen_conn: psycopg.AsyncConnection[Any] | None, wait_s: float) -> None:
        """Sleep up to ``wait_s``: woken early by a stop, or (following) by a NOTIFY from a new outbox row."""
        stop = asyncio.create_task(self._stopping.wait())
        waits: list[asyncio.Task[Any]] = [stop]
        if listen_conn is not None:
            waits.append(asyncio.create_task(self._notified(listen_conn, wait_s)))
        try:
            await asyncio.wait(waits, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    @staticmethod
    async def _notified(listen_conn: psycopg.AsyncConnection[Any], wait_s: float) -> None:
        async for _ in listen_conn.notifies(timeout=wait_s, stop_after=1):
            return

    async def _batch(self, items: Sequence[OutboxItem], send_before: float, conn: psycopg.AsyncConnection[Any]) -> None:
        outcomes = await self.sink.deliver(items, send_before)
        by_id = {it.id: it for it in items}
        delays: dict[int, float] = {}
        for o in outcomes:
            self._count(o, by_id[o.id])
            if o.verdict is Verdict.RETRY:
                delays[o.id] = (
                    backoff_s(
                        by_id[o.id].attempts,
                        self.config.retry_base_s,
                        self.config.retry_max_s,
                        self._rng.random(),
                        o.retry_after_s,
                    )
                    if o.sent
                    else 0.0
                )
        async with self._settle_lock:
            updated = await settle(conn, items[0].claim_token, outcomes, delays)
        if updated < len(outcomes):
            self.stats.lost_leases += len(outcomes) - updated
            log.warning("bridge: %d of %d results not recorded (lease taken over)", len(outcomes) - updated, len(items))

    def _count(self, o: Outcome, item: OutboxItem) -> None:
        if o.verdict is Verdict.DELIVERED:
            self.stats.delivered += 1
        elif o.verdict is Verdict.REJECTED:
            self.stats.rejected += 1
            log.warning("bridge: item %d (%s, key %s) rejected: %s", item.id, item.kind, item.idempotency_key, o.error)
        elif not o.sent:
            self.stats.not_sent += 1
        else:
            self.stats.retried += 1
            self._fault(item, o)

    def _fault(self, item: OutboxItem, o: Outcome) -> None:
        """Log failed attempts once per window (billing down means thousands of them), count them always."""
        log.debug("bridge: item %d attempt %d failed: %s", item.id, item.attempts, o.error)
        now = asyncio.get_running_loop().time()
        self._faults_in_window += 1
        if now - self._fault_logged_at >= self.config.fault_log_window_s:
            log.warning(
                "bridge: %d failed attempt(s) since the last report, will retry; latest: item %d (key %s): %s",
                self._faults_in_window,
                item.id,
                item.idempotency_key,
                o.error,
            )
            self._fault_logged_at = now
            self._faults_in_window = 0


def build_dispatcher(
    settings: Settings, url: str, *, follow: bool = True, channel: str = "billing"
) -> Dispatcher | None:
    """The dispatcher ``amiflow serve`` runs (``await d.run()``, ``d.stop()``): channel ``billing`` to the webhook
    (None when AMIFLOW_BILLING_URL is unset: bills stay in the outbox), channel ``email`` the e-bills over
    AMIFLOW_SMTP_URL (None when it is unset)."""
    config = DispatchConfig(
        batch_size=settings.bridge_batch_size,
        retry_base_s=settings.bridge_retry_base_s,
        retry_max_s=settings.bridge_retry_max_s,
        follow=follow,
        channel=channel,
    )
    if channel == "email":
        if settings.smtp_url is None:
            return None
        from billing_bridge.email_sink import make_email_sink

        return Dispatcher(url, make_email_sink(settings), config)
    if not settings.billing_url:
        return None
    return Dispatcher(url, make_sink(settings, "webhook"), config)
