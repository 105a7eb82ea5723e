"""Push readers: SML and DSMR P1 meters on a serial port or behind a TCP serial server, read into the store.

A push meter is never polled: it sends a frame every 1-10 s whether anyone listens or not. For every registered
meter with an ``sml+serial://``, ``sml+tcp://``, ``p1://`` or ``p1+tcp://`` URI, a :class:`PushReader` keeps the link
open (:func:`protocols.transport.open_link`; serial 9600 8N1 for SML, 115200 8N1 for P1, or the URI's ``?baud=``),
feeds what arrives to the meter's adapter (:mod:`ingest.push_decoders`: resync after garbage, a stable reason per
bad frame), stores a sample of the good frames and the interval energy derived at interval boundaries
(:mod:`ingest.push_schedule`) and quarantines the bad ones with their raw bytes (:mod:`ingest.push_store`).

A link that drops, cannot be opened or goes silent for ``silence_s`` is reopened after a jittered exponential
backoff (``backoff_base_s`` doubling up to ``backoff_max_s``; reset by a good frame); each failure is recorded in
``amiflow.poll_state`` and ``offline_after`` failures in a row mark the meter ``offline``; a good frame marks it
``online`` again. A database that refuses a write keeps the frame's rows for the next try (bounded by
``max_pending_rows``, the oldest dropped first and counted). Counters per meter: frames ok/bad (by reason),
readings stored, duplicates, quarantined, noise bytes skipped, sampled-out readings, connects and link failures.

:class:`PushFleet` runs one reader task per push meter, refreshed from the registry (new meters start, removed or
changed ones stop); the poller (:class:`ingest.poller.Poller`) runs one beside its polls and stops it with them, so
``amiflow poll`` and ``amiflow serve`` read push meters too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from amiflow.errors import AmiflowError, ConfigError, StorageError, TransportError
from amiflow.types import ReadingBatch
from amiflow.uri import MeterUri, parse_meter_uri
from ingest.poll_store import PolledMeterRow
from ingest.push_decoders import BadFrame, GoodFrame, PushDecoder, PushEvent, push_decoder
from ingest.push_schedule import Boundary, PushSchedule
from ingest.push_store import PushStore
from protocols.transport import Link, open_link

__all__ = ["DbRunner", "PushConfig", "PushReader"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Runs one synchronous store operation off the event loop: ``await db(fn, *args)``.
DbRunner = Callable[..., Awaitable[Any]]
LinkFactory = Callable[[MeterUri, float], Link]


def _open(uri: MeterUri, timeout_s: float) -> Link:
    return open_link(uri, timeout_s=timeout_s)


@dataclass(frozen=True, slots=True)
class PushConfig:
    """How push meters are read (see the module docstring); ``interval_s`` is the poller's interval."""

    interval_s: int = 900
    sample_s: int = 60
    boundary_window_s: int = 60
    silence_s: float = 30.0
    connect_timeout_s: float = 5.0
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    offline_after: int = 3
    log_window_s: float = 600.0
    max_pending_rows: int = 100_000


def thread_runner() -> DbRunner:
    """A runner of its own: one operation at a time, in a worker thread."""
    lock = asyncio.Lock()

    async def run(fn: Callable[..., Any], *args: Any) -> Any:
        async with lock:
            return await asyncio.to_thread(fn, *args)

    return run


class PushReader:
    """Reads one push meter until cancelled; ``counters`` and ``bad_reasons`` say what it saw."""

    def __init__(
        self,
        row: PolledMeterRow,
        store: PushStore,
        config: PushConfig,
        *,
        db: DbRunner | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        link_factory: LinkFactory = _open,
    ) -> None:
        self.row = row
        self.config = config
        self._store = store
        self._db = db or thread_runner()
        self._clock = clock
        self._rng = rng or random.Random()
        self.link_factory = link_factory
        self.counters: dict[str, int] = dict.fromkeys(
            ("frames_ok", "frames_bad", "readings", "duplicates", "quarantined", "skipped_bytes", "sampled_out",
             "connects", "link_failures", "dropped_rows"), 0)  # fmt: skip
        self.bad_reasons: dict[str, int] = {}
        self.frames_seen = 0  # good and bad frames handled, for callers that wait for the reader to catch up
        self._pending: list[tuple[ReadingBatch, list[BadFrame], Boundary | None]] = []
        self._last_log: dict[str, float] = {}
        self._online = False
        self._schedule: PushSchedule | None = None
        self.stopping = False  # set by request_stop(): run() returns at its next step

    def request_stop(self) -> None:
        """Ask :meth:`run` to return at its next step. Cancel the task as well: this flag covers a cancellation
        that ``asyncio.wait_for`` swallows on Python 3.11 when a read completes at the same moment (gh-86296)."""
        self.stopping = True

    async def run(self) -> None:
        """Read until cancelled or asked to stop; a bad URI is recorded as a failure and ends this reader."""
        try:
            uri = parse_meter_uri(self.row.uri)
            decoder = push_decoder(self.row.name, uri)
        except ConfigError as exc:
            await self._link_failed(str(exc))
            return
        last = await self._call(self._store.last_boundary, self.row.meter_id)
        c = self.config
        self._schedule = PushSchedule(
            interval_s=c.interval_s, sample_s=c.sample_s, boundary_window_s=c.boundary_window_s, last=last
        )
        attempt = 0
        while not self.stopping:
            try:
                async with self.link_factory(uri, c.connect_timeout_s) as link:
                    self.counters["connects"] += 1
                    while not self.stopping:
                        chunk = await link.read(65_536, timeout_s=c.silence_s)
                        if await self._handle(decoder, decoder.feed(chunk, int(self._clock()))):
                            attempt = 0
            except ConfigError as exc:  # serial settings the port refuses: nothing to retry until the URI changes
                await self._link_failed(str(exc))
                return
            except TransportError as exc:
                error = f"{type(exc).__name__}: {exc}"
            else:
                return  # asked to stop
            await self._handle(decoder, decoder.close(int(self._clock())))
            await self._link_failed(error)
            delay = self._rng.uniform(0.0, min(c.backoff_max_s, c.backoff_base_s * 2**attempt))
            attempt = min(attempt + 1, 30)
            await asyncio.sleep(delay)

    async def _handle(self, decoder: PushDecoder, events: list[PushEvent]) -> bool:
        """Count, sample and save the events of one chunk; True when a good frame was among them."""
        assert self._schedule is not None
        self.counters["skipped_bytes"] = decoder.skipped
        batches: list[ReadingBatch] = []
        bad: list[BadFrame] = []
        mark: Boundary | None = None
        good = False
        for event in events:
            self.frames_seen += 1
            if isinstance(event, GoodFrame):
                good = True
                self.counters["frames_ok"] += 1
                batch, marked = self._schedule.take(event.batch)
                batches += [batch] if len(batch) else []
                mark = marked or mark
            else:
                self.counters["frames_bad"] += 1
                self.bad_reasons[event.reason] = self.bad_reasons.get(event.reason, 0) + 1
                bad.append(event)
                self._log_once(f"bad:{event.reason}", "meter %s: bad frame (%s): %s", event.reason, event.detail)
        self.counters["sampled_out"] = self._schedule.sampled_out
        if batches or bad or mark:
            self._pending.append((ReadingBatch.concat(batches), bad, mark))
            await self._flush()
        if good and not self._online:
            self._online = True
            with contextlib.suppress(StorageError):
                await self._call(self._store.link_up, self.row.meter_id, self._now())
        return good

    async def _flush(self) -> None:
        self._bound_pending()
        while self._pending:
            try:
                await self._shielded(self._save_first())
            except StorageError as exc:
                self._log_once("storage", "meter %s: not stored yet (kept for the next frame): %s", exc)
                return

    async def _save_first(self) -> None:
        batch, bad, mark = self._pending[0]
        at = self._now()
        saved = await self._db(lambda: self._store.save(self.row, batch, bad, mark, at))
        self._pending.pop(0)
        self.counters["readings"] += saved.written.inserted
        self.counters["duplicates"] += saved.written.duplicates
        self.counters["quarantined"] += saved.quarantined + saved.written.quarantined

    def _bound_pending(self) -> None:
        rows = sum(len(b) for b, _, _ in self._pending)
        while len(self._pending) > 1 and rows > self.config.max_pending_rows:
            dropped = self._pending.pop(0)
            rows -= len(dropped[0])
            self.counters["dropped_rows"] += len(dropped[0])

    async def _link_failed(self, error: str) -> None:
        self.counters["link_failures"] += 1
        self._online = False
        self._log_once("link", "meter %s: link down, reconnecting: %s", error)
        with contextlib.suppress(StorageError):
            await self._call(
                self._store.link_failed, self.row.meter_id, self._now(), error, offline_after=self.config.offline_after
            )

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await self._shielded(self._db(lambda: fn(*args, **kwargs)))

    @staticmethod
    async def _shielded(work: Awaitable[T]) -> T:
        """``work`` finishes even when the reader is cancelled meanwhile (nothing half-written, nothing uncounted)."""
        task = asyncio.ensure_future(work)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            with contextlib.suppress(AmiflowError):
                await task
            raise

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def _log_once(self, key: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last_log.get(key, -1e18) >= self.config.log_window_s:
            self._last_log[key] = now
            log.warning(message, self.row.name, *args, extra={"meter": self.row.name})
