"""The wireless M-Bus receiver into ingest (``amiflow ingest wmbus --from -|tcp://HOST:PORT|serial:///dev/ttyX``).

Frames come from a byte stream: hex lines (stdin, a TCP gateway or rtl-wmbus behind ``nc``, the default except on
serial) or a stick's raw bytes (``--format raw``, L-prefixed frames cut where their CRCs hold;
:class:`protocols.mbus.receiver.WmbusReceiver`). A frame's readings carry the time the frame was heard: the time
stamp of its line when the line has one (``2026-11-01T00:15:00Z;<hex>``, rtl-wmbus's ``T1;1;1;2026-11-01
00:15:00.000;...``; without an offset it is UTC), so a log read twice stores nothing twice; else the time this
receiver first heard those bytes: the same bytes again within ``repeat_window_s`` (a repeater, an echo of the
gateway, a retransmission) keep the first time. Either way a repeated frame's readings are duplicates in the
writer, never doubles. Frames are collected for at most ``latency_s`` or
``batch_max`` frames, then decoded against the registry (:mod:`ingest.wmbus_decode`) and stored in one transaction
(:class:`ingest.wmbus_store.WmbusStore`).

Nothing good is lost while the database is away: the raw frames, with the time each was heard, go to a spool of
their own (:class:`ingest.spool.Spool` under ``{data_dir}/spool-wmbus``, fsync'd), and are replayed, in order and
before new frames, once it answers (frames are decoded at replay, with the registry of that moment). A batch the
database refuses is stored frame by frame, and a frame it still refuses is quarantined as ``store_error``. A
stream cannot be told to resend, so frames held in memory (at most ``latency_s`` worth) are the only ones a crash
can lose.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from amiflow.errors import StorageError
from ingest.batch_store import DatabaseDown
from ingest.spool import Spool, SpoolFull
from ingest.wmbus_decode import Decoded, decode_frame
from ingest.wmbus_store import WmbusOutcome, WmbusStore
from protocols.mbus.link import FrameFault
from protocols.mbus.receiver import WmbusReceiver

__all__ = ["Heard", "WmbusCounts", "WmbusIngest", "line_time"]

log = logging.getLogger(__name__)

_TOPIC: Final = "wmbus"  # the spool's topic field: these records are frames, not MQTT messages
_REPLAY: Final = 2000
_PROBE_EVERY_S: Final = 2.0

#: reads the next chunk of the stream; b"" at its end
ByteSource = Callable[[], Awaitable[bytes]]
_STAMP: Final = re.compile(rb"(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(?:\.\d+)?\s*(Z|[+-]\d{2}:?\d{2})?")


def line_time(line: bytes) -> int | None:
    """The time stamp of a receiver's log line (epoch s; UTC when it has no offset), or None."""
    m = _STAMP.search(line)
    if m is None:
        return None
    zone = (m[3] or b"Z").decode()
    try:
        when = datetime.fromisoformat(f"{m[1].decode()}T{m[2].decode()}{'+00:00' if zone == 'Z' else zone}")
    except ValueError:
        return None
    return int(when.astimezone(UTC).timestamp())


@dataclass(frozen=True, slots=True)
class Heard:
    """One frame as received, and when it was first heard (epoch seconds)."""

    raw: bytes
    ts: int


@dataclass(slots=True)
class WmbusCounts:
    """What the receiver did (``amiflow ingest wmbus`` prints it at the end)."""

    frames: int = 0
    repeated: int = 0
    stored: int = 0
    duplicates: int = 0
    conflicts: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    spooled: int = 0
    replayed: int = 0
    unframed_bytes: int = 0

    def add(self, outcome: WmbusOutcome) -> None:
        self.stored += outcome.written.inserted
        self.duplicates += outcome.written.duplicates
        self.conflicts += outcome.written.conflicts
        for reason, n in outcome.quarantined.items():
            self.quarantined[reason] = self.quarantined.get(reason, 0) + n


class WmbusIngest:
    """Reads a stream, batches frames, commits them through ``store`` or spools them to ``spool``."""

    def __init__(
        self,
        store: WmbusStore,
        spool: Spool,
        *,
        mode: str = "hex",
        batch_max: int = 500,
        latency_s: float = 1.0,
        repeat_window_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.spool = spool
        self.receiver = WmbusReceiver(mode)  # no keys: frames are decoded with the registry's, at commit
        self.batch_max = batch_max
        self.latency_s = latency_s
        self.repeat_window_s = repeat_window_s
        self.counts = WmbusCounts()
        self._clock = clock
        self._heard: collections.OrderedDict[bytes, float] = collections.OrderedDict()
        self._pending: list[Heard] = []
        self._db_up = True
        self._next_probe = 0.0

    # -- the stream ------------------------------------------------------------------------------------------------
    async def run(self, read: ByteSource, stop: asyncio.Event) -> WmbusCounts:
        """Read until the stream ends or ``stop`` is set; every frame heard is stored, quarantined or spooled."""
        deadline: float | None = None
        reader: asyncio.Task[bytes] | None = None
        try:
            while not stop.is_set():
                if reader is None:
                    reader = asyncio.ensure_future(read())
                stopper = asyncio.ensure_future(stop.wait())
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                if self.spool and not self._pending:  # a quiet stream must not hold up the replay
                    wait = _PROBE_EVERY_S if wait is None else min(wait, _PROBE_EVERY_S)
                done, _ = await asyncio.wait({reader, stopper}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                if reader in done:
                    chunk, reader = reader.result(), None
                    self.receiver.receive_data(chunk)
                    self._take_frames()
                    if not chunk:
                        break
                if self._pending and deadline is None:
                    deadline = time.monotonic() + self.latency_s
                if self._pending and (len(self._pending) >= self.batch_max or time.monotonic() >= (deadline or 0)):
                    await self.flush()
                    deadline = None
                elif not self._pending and self.spool:
                    await asyncio.to_thread(self._replay)
        finally:
            if reader is not None:
                reader.cancel()
        self.receiver.receive_data(b"")
        self._take_frames()
        await self.flush()
        return self.counts

    def _take_frames(self) -> None:
        before = self.receiver.skipped
        while (frame := self.receiver.next_frame()) is not None:
            if isinstance(frame, FrameFault):  # a line longer than any frame: kept for an operator
                self._pending.append(Heard(frame.raw, int(self._clock())))
                continue
            stamped = line_time(frame.line)
            ts = stamped if stamped is not None else self._first_heard(frame.data)
            self._pending.append(Heard(frame.data, ts))
            self.counts.frames += 1
        self.counts.unframed_bytes += self.receiver.skipped - before

    def _first_heard(self, raw: bytes) -> int:
        now = self._clock()
        digest = hashlib.blake2b(raw, digest_size=16).digest()
        while self._heard and now - next(iter(self._heard.values())) > self.repeat_window_s:
            self._heard.popitem(last=False)
        first = self._heard.get(digest)
        if first is not None:
            self.counts.repeated += 1
            return int(first)
        self._heard[digest] = now
        return int(now)

    async def flush(self) -> None:
        """Commit (or spool) what has been heard so far."""
        if self._pending:
            batch, self._pending = self._pending, []
            await asyncio.to_thread(self._commit, batch)

    # -- commit, spool, replay (in a worker thread) ----------------------------------------------------------------
    def _commit(self, frames: list[Heard]) -> None:
        if self.spool and not self._replay():
            self._spool(frames)  # keep the order: older spooled frames go first
            return
        if not self._may_try_db() or not self._store(frames):
            self._spool(frames)

    def _may_try_db(self) -> bool:
        return self._db_up or time.monotonic() >= self._next_probe

    def _store(self, frames: list[Heard]) -> bool:
        """True once the frames are committed (or quarantined one by one); False when the database is down."""
        try:
            self._write(frames)
        except DatabaseDown as exc:
            self._down(exc)
            return False
        except StorageError as exc:
            log.error("%s; storing the batch's %d frames one at a time", exc, len(frames))
            return self._one_by_one(frames)
        self._up()
        return True

    def _write(self, frames: list[Heard]) -> None:
        senders = self.store.senders()
        decoded = [decode_frame(f.raw, f.ts, senders) for f in frames]
        self.counts.add(self.store.write(decoded, now=self._clock()))

    def _one_by_one(self, frames: list[Heard]) -> bool:
        for f in frames:
            try:
                self._write([f])
                continue
            except DatabaseDown as exc:
                self._down(exc)
                return False
            except StorageError as exc:
                error = str(exc)[:2000]
            try:
                self.store.quarantine_raw([Decoded(f.raw, f.ts)], "store_error", error)
            except StorageError as exc:
                self._down(exc)
                return False
            self.counts.quarantined["store_error"] = self.counts.quarantined.get("store_error", 0) + 1
        return True

    def _spool(self, frames: list[Heard]) -> None:
        while True:
            try:
                self.spool.append((_TOPIC, f.raw, float(f.ts)) for f in frames)
            except SpoolFull as exc:  # nothing else to put them: wait for the database (the stream backs up)
                log.critical("%s", exc)
                time.sleep(_PROBE_EVERY_S)
                if self._may_try_db() and self._store(frames):
                    return
                continue
            self.counts.spooled += len(frames)
            return

    def _replay(self) -> bool:
        """Replay the spool while the database answers; True when it is empty."""
        while self.spool:
            if not self._may_try_db():
                return False
            records = self.spool.read(_REPLAY)
            if not records:
                return True
            if not self._store([Heard(r.payload, int(r.received_at)) for r in records]):
                return False
            self.spool.commit(records[-1].position)
            self.counts.replayed += len(records)
            if not self.spool:
                log.info("wM-Bus spool replayed completely")
        return True

    def _down(self, exc: Exception) -> None:
        if self._db_up:
            log.error("%s; spooling wM-Bus frames to %s until it returns", exc, self.spool.directory)
        self._db_up = False
        self._next_probe = time.monotonic() + _PROBE_EVERY_S

    def _up(self) -> None:
        if not self._db_up:
            log.info("database available again")
        self._db_up = True
