"""The polling scheduler: reads every registered DLMS, IEC 62056-21 and Modbus meter on its schedule (`amiflow poll`).

Each meter is polled once per interval at a stable, jittered offset after the interval boundary (spreading the load
on shared buses). A poll reads the meter's clock (drift is recorded; the clock is set only when told), its load
profile from the last stored interval up to now (so an outage leaves no gap that the meter still holds: the profile is
backfilled on the next successful poll) and its registers; meters without a load profile (Modbus) get interval energy
from the delta of consecutive register reads at interval boundaries. Readings are stored through the batch writer
(idempotent, so a re-read interval is a duplicate, never a double). One request at a time runs per bus (a serial
line or a TCP gateway); a meter that keeps failing is skipped by its circuit breaker until a cool-down passes; a
meter that times out, answers garbage or vanishes costs one failed poll, never the poller. Push meters (SML, DSMR P1
on a serial port or a TCP serial server) are not polled: :meth:`Poller.run` reads them meanwhile through a
:class:`~ingest.push_fleet.PushFleet` (one reader per meter, refreshed every interval, stopped with the poller).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from amiflow.errors import AmiflowError, ConfigError, ProtocolError, TransportError
from amiflow.settings import Settings
from amiflow.types import QualityFlag, ReadingBatch, Source
from amiflow.uri import MeterUri, parse_meter_uri
from ingest.meter_sessions import SessionFactory, open_session
from ingest.poll_store import PolledMeterRow, PollStore
from ingest.push_fleet import PushFleet
from protocols.transport import BusLock, CircuitBreaker

__all__ = ["PollOutcome", "PollSummary", "Poller", "PollerConfig"]

log = logging.getLogger(__name__)

#: registers whose deltas at interval boundaries become intervals, the first a meter reports: electricity import,
#: then (M-Bus, protocols.mbus.readings) heat energy, cooling energy, water, warm water, gas volume
_BOUNDARY_REGISTERS = ("1-0:1.8.0", "6-0:1.8.0", "5-0:1.8.0", "8-0:1.8.0", "9-0:1.8.0", "7-0:3.8.0")


@dataclass(frozen=True, slots=True)
class PollerConfig:
    interval_s: int = 900
    jitter_s: float = 30.0
    timeout_s: float = 5.0
    retries: int = 2
    retry_base_s: float = 0.5
    clock_tolerance_s: float = 10.0
    sync_clock: bool = False
    concurrency: int = 64
    backfill_max_s: int = 35 * 86400  # never ask a meter for more than this much profile
    breaker_threshold: int = 3
    breaker_cooldown_s: float = 300.0
    log_window_s: float = 600.0

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> PollerConfig:
        return cls(
            interval_s=settings.poll_interval_s,
            jitter_s=settings.poll_jitter_s,
            timeout_s=settings.poll_timeout_s,
            retries=settings.poll_retries,
            clock_tolerance_s=settings.clock_drift_tolerance_s,
            **overrides,
        )


@dataclass(frozen=True, slots=True)
class PollOutcome:
    meter: str
    ok: bool
    stored: int = 0
    duplicates: int = 0
    clock_offset_s: float | None = None
    error: str | None = None
    skipped: bool = False


@dataclass(slots=True)
class PollSummary:
    polled: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    stored: int = 0
    duplicates: int = 0
    errors: dict[str, str] = field(default_factory=dict)

    def add(self, outcome: PollOutcome) -> None:
        if outcome.skipped:
            self.skipped += 1
            return
        self.polled += 1
        self.ok += outcome.ok
        self.failed += not outcome.ok
        self.stored += outcome.stored
        self.duplicates += outcome.duplicates
        if outcome.error:
            self.errors[outcome.meter] = outcome.error


def _epoch_dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class Poller:
    """Polls meters through sessions from ``session_factory`` and stores through ``store`` (sync, run in a thread)."""

    def __init__(
        self,
        store: PollStore,
        config: PollerConfig,
        *,
        session_factory: SessionFactory = open_session,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._config = config
        self._open = session_factory
        self._clock = clock
        self._rng = rng or random.Random()
        self._db_lock = asyncio.Lock()
        self._buses = BusLock()
        self._breakers: dict[str, CircuitBreaker] = {}
        self._now = 0.0  # the time of the poll in progress: breakers run on the poller's (possibly simulated) clock
        self._last_log: dict[str, float] = {}
        self.counters: dict[str, int] = {"polls": 0, "ok": 0, "failed": 0, "skipped": 0, "stored": 0}
        self.push: PushFleet | None = None  # the push meters' readers while run() runs

    async def _db(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        async with self._db_lock:
            return await asyncio.to_thread(fn, *args, **kwargs)

    def offset_s(self, meter: str) -> float:
        """The meter's stable poll offset after each interval boundary (a hash, so restarts keep the spread)."""
        return (zlib.crc32(meter.encode()) % 1000) / 1000 * self._config.jitter_s

    async def meters(self) -> list[PolledMeterRow]:
        rows: list[PolledMeterRow] = await self._db(self._store.meters)
        return rows

    async def poll_all(self, now: float | None = None, meters: list[PolledMeterRow] | None = None) -> PollSummary:
        """Poll every meter once (bounded concurrency, one request per bus at a time); returns the summary."""
        now = self._clock() if now is None else now
        rows = await self.meters() if meters is None else meters
        limit = asyncio.Semaphore(self._config.concurrency)
        summary = PollSummary()

        async def one(row: PolledMeterRow) -> None:
            async with limit:
                summary.add(await self.poll_meter(row, now))

        await asyncio.gather(*(one(r) for r in rows))
        return summary

    async def poll_meter(self, row: PolledMeterRow, now: float) -> PollOutcome:
        """One poll of one meter; never raises for a meter's fault."""
        try:
            uri = parse_meter_uri(row.uri)
        except ConfigError as exc:
            return await self._failed(row, now, str(exc))
        self._now = now
        breaker = self._breakers.get(row.name)
        if breaker is None:
            breaker = self._breakers[row.name] = CircuitBreaker(
                row.name,
                failure_threshold=self._config.breaker_threshold,
                cooldown_s=self._config.breaker_cooldown_s,
                clock=lambda: self._now,
            )
        if not breaker.allow():
            self.counters["skipped"] += 1
            return PollOutcome(row.name, ok=False, skipped=True, error="circuit open")
        self.counters["polls"] += 1
        last_error = ""
        for attempt in range(self._config.retries + 1):
            try:
                async with self._buses.hold(uri):
                    outcome = await self._read_and_store(row, uri, now)
                breaker.record_success()
                self.counters["ok"] += 1
                self.counters["stored"] += outcome.stored
                return outcome
            except (TransportError, ProtocolError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            except AmiflowError as exc:  # a storage or configuration failure: not worth retrying
                last_error = f"{type(exc).__name__}: {exc}"
                break
            except Exception as exc:  # a bug in an adapter for one meter must not stop the poller (supervisor)
                log.exception("poll of %s: unexpected error", row.name, extra={"meter": row.name})
                last_error = f"internal error: {type(exc).__name__}: {exc}"
                break
            if attempt < self._config.retries:
                delay = self._config.retry_base_s * 2**attempt
                await asyncio.sleep(delay * (0.5 + self._rng.random()))
        breaker.record_failure()
        return await self._failed(row, now, last_error)

    async def _failed(self, row: PolledMeterRow, now: float, error: str) -> PollOutcome:
        self.counters["failed"] += 1
        failures = await self._db(self._store.record_failure, row.meter_id, _epoch_dt(now), error)
        if failures >= self._config.breaker_threshold:
            await self._db(self._store.mark_offline, row.meter_id)
        if now - self._last_log.get(row.name, -1e18) >= self._config.log_window_s:
            self._last_log[row.name] = now
            log.warning("poll of %s failed (%d in a row): %s", row.name, failures, error, extra={"meter": row.name})
        return PollOutcome(row.name, ok=False, error=error)

    async def _read_and_store(self, row: PolledMeterRow, uri: MeterUri, now: float) -> PollOutcome:
        cfg = self._config
        cursor = await self._db(self._store.cursor, row.meter_id)
        boundary = int(now // cfg.interval_s) * cfg.interval_s
        batches: list[ReadingBatch] = []
        offset: float | None = None
        synced = False
        async with self._open(row.name, uri, cfg.timeout_s) as session:
            meter_clock = await session.read_clock()
            if meter_clock is not None:
                offset = meter_clock.timestamp() - now
                if abs(offset) > cfg.clock_tolerance_s and cfg.sync_clock:
                    await session.set_clock(_epoch_dt(self._clock()))
                    synced = True
            profile_last: datetime | None = None
            if session.has_profile:
                oldest = boundary - cfg.backfill_max_s
                # a meter polled for the first time gives everything it holds within the backfill horizon
                after = cursor.last_profile_ts.timestamp() if cursor.last_profile_ts else oldest
                after = max(after, oldest)
                if after < boundary:
                    profile = await session.read_profile(_epoch_dt(after), _epoch_dt(boundary))
                    profile = profile.take((profile.ts > after) & (profile.ts <= boundary))
                    if len(profile):
                        if offset is not None and abs(offset) > cfg.clock_tolerance_s:
                            profile = _with_quality(profile, np.ones(len(profile), bool), QualityFlag.CLOCK_SKEW)
                        if cursor.failures:  # intervals that earlier, failed polls should have read
                            profile = _with_quality(profile, profile.ts < boundary, QualityFlag.BACKFILLED)
                        batches.append(profile)
                        interval_rows = profile.ts[profile.obis == "1-0:1.29.0"]
                        if len(interval_rows):
                            profile_last = _epoch_dt(float(interval_rows.max()))
            registers = await session.read_registers(_epoch_dt(now))
        batches.append(registers)
        reg_ts, reg_wh = None, None
        if not session.has_profile:
            derived, reg_ts, reg_wh = self._derive_interval(row.name, registers, cursor, boundary, now)
            if len(derived):
                batches.append(derived)
        batch = ReadingBatch.concat([b for b in batches if len(b)])
        result = await self._db(self._store.store, batch)
        at = _epoch_dt(now)
        if offset is not None:
            within = abs(offset) <= cfg.clock_tolerance_s
            await self._db(self._store.record_clock, row.meter_id, at, offset, within, synced)
        await self._db(
            self._store.record_success,
            row.meter_id,
            at,
            last_profile_ts=profile_last,
            last_register_ts=reg_ts,
            last_register_wh=reg_wh,
        )
        return PollOutcome(
            row.name, ok=True, stored=result.inserted, duplicates=result.duplicates, clock_offset_s=offset
        )

    def _derive_interval(
        self, meter: str, registers: ReadingBatch, cursor: Any, boundary: int, now: float
    ) -> tuple[ReadingBatch, datetime | None, float | None]:
        """Interval energy from two register reads taken at consecutive interval boundaries (Modbus meters; M-Bus
        heat, water and gas meters by their main register: the interval channel ``C.29.E`` of register ``C.8.E``)."""
        register = next((code for code in _BOUNDARY_REGISTERS if (registers.obis == code).any()), None)
        if register is None:
            return ReadingBatch(), None, None
        mask = registers.obis == register
        value = float(registers.value[mask][0])
        if now - boundary > max(self._config.jitter_s * 2, 60.0):
            return ReadingBatch(), None, None  # not read near a boundary: no interval to attribute it to
        prev_ts, prev = cursor.last_register_ts, cursor.last_register_wh
        this_ts = _epoch_dt(boundary)
        if prev_ts is not None and prev is not None and int(prev_ts.timestamp()) == boundary - self._config.interval_s:
            delta = value - prev
            if delta >= 0:
                derived = ReadingBatch.from_columns(
                    meter,
                    register.replace(".8.", ".29.", 1),
                    [boundary],
                    [delta],
                    unit=str(registers.unit[mask][0] or "Wh"),
                    source=registers.source[0] if len(registers) else Source.MODBUS,
                )
                return derived, this_ts, value
        return ReadingBatch(), this_ts, value

    async def run(self, stop: asyncio.Event) -> None:
        """Poll each meter once per interval at its offset until ``stop`` is set; in-flight polls finish first.
        Push meters are read meanwhile (registry refreshed every interval) and their readers stopped on the way out."""
        tasks: set[asyncio.Task[None]] = set()
        cfg = self._config
        self.push = PushFleet.beside(self._store, cfg.interval_s, cfg.timeout_s, cfg.breaker_threshold, db=self._db,
                                     clock=self._clock)  # fmt: skip
        try:
            while not stop.is_set():
                if self.push is not None:
                    await self.push.refresh()
                boundary = int(self._clock() // self._config.interval_s) * self._config.interval_s
                for row in sorted(await self.meters(), key=lambda r: self.offset_s(r.name)):
                    if await _sleep_until(stop, boundary + self.offset_s(row.name) - self._clock()):
                        break
                    task = asyncio.create_task(self._poll_logged(row, self._clock()))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                await _sleep_until(stop, boundary + self._config.interval_s - self._clock())
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            if self.push is not None:
                await self.push.stop()

    async def _poll_logged(self, row: PolledMeterRow, now: float) -> None:
        outcome = await self.poll_meter(row, now)
        if outcome.ok:
            log.info("polled %s: %d stored", row.name, outcome.stored, extra={"meter": row.name})

    def prometheus(self) -> str:
        """The poller's counters (and its push readers') as Prometheus text."""
        return "".join(
            f"# TYPE amiflow_poller_{k}_total counter\namiflow_poller_{k}_total {v}\n" for k, v in self.counters.items()
        ) + (self.push.prometheus() if self.push is not None else "")


async def _sleep_until(stop: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds`` or until stopped; True when stopped."""
    if seconds > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


def _with_quality(batch: ReadingBatch, where: Any, flag: int) -> ReadingBatch:
    quality = np.where(where, batch.quality | np.int32(flag), batch.quality).astype(np.int32)
    return ReadingBatch(batch.meter, batch.obis, batch.ts, batch.value, quality, batch.source, batch.unit)
