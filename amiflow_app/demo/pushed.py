"""The pushed part of ``amiflow demo``: a simulated SML push meter (an EMH eHZ on its optical port, behind a TCP
serial server) read by the real push reader (:class:`ingest.push_reader.PushReader`) through the simulated month.

The meter and the reader run on two simulated clocks that the polling loop steps from boundary to boundary with the
polled meters. An eHZ sends no clock (only a seconds counter), so the reader stamps each file with its own receive
time; a file the meter made before a step must therefore not reach the reader after it. Each step moves the meter's
clock first, lets the reader take every file made at the old time, then moves the reader's clock and waits for a
file made at the new time: the reader stores it and derives the interval energy at the boundary, as it would from a
meter pushing every few seconds in real time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import psycopg

from ingest.push_fleet import stop_task
from ingest.push_reader import PushConfig, PushReader
from ingest.push_store import PushStore
from simulators.sml_meter import SmlSimulator
from simulators.sml_profiles import SmlMeter

__all__ = ["PUSH_INTERVAL_S", "SML_METER_INDEX", "PushedMeter", "SteppedMeter", "sml_simulator"]

log = logging.getLogger(__name__)

SML_METER_INDEX = 930_000
#: Seconds between the simulated meter's pushes (a real eHZ: 1-4 s); a few per step of the simulated clock.
PUSH_INTERVAL_S = (0.002, 0.004)
_STEP_TIMEOUT_S = 5.0


class SimClock:
    """A settable clock (epoch seconds)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class SteppedMeter(SmlMeter):
    """The load model's registers once per simulated time: between steps the clock stands and the files repeat, and
    a register costs ~10 ms of the load model while the meter pushes every few ms."""

    def __init__(self, seed: int) -> None:
        super().__init__("ehz", seed=seed, meter_index=SML_METER_INDEX)
        self._registers: dict[int, tuple[int, int]] = {}

    def registers_wh(self, ts: int) -> tuple[int, int]:
        if ts not in self._registers:
            if len(self._registers) > 16:
                self._registers.clear()
            self._registers[ts] = super().registers_wh(ts)
        return self._registers[ts]


def sml_simulator(seed: int, now: float) -> SmlSimulator:
    """The demo's SML meter (an eHZ) on loopback TCP, on a clock of its own (``sim.clock``)."""
    sim = SmlSimulator(
        "tcp://127.0.0.1:0", profile="ehz", seed=seed, meter_index=SML_METER_INDEX, interval_s=PUSH_INTERVAL_S,
        clock=SimClock(now),
    )  # fmt: skip
    sim.meter = SteppedMeter(seed)
    return sim


async def _until(cond: Callable[[], bool]) -> bool:
    for _ in range(int(_STEP_TIMEOUT_S / 0.001)):
        if cond():
            return True
        await asyncio.sleep(0.001)
    return False


class PushedMeter:
    """One simulated push meter and its reader (own database connection), stepped with :meth:`step`."""

    def __init__(self, sim: Any, url: str, interval_s: int) -> None:
        self.sim = sim
        self._url = url
        self._interval_s = interval_s
        self._clock = SimClock(sim.clock.now)
        self._conn: psycopg.Connection[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self.reader: PushReader | None = None
        self._lost = 0
        self.late_steps = 0  # steps where no file made at the new time arrived in time (that interval is missed)

    async def start(self) -> None:
        """Start the reader of the registered meter (register it first)."""
        conn: psycopg.Connection[Any] = await asyncio.to_thread(psycopg.connect, self._url, autocommit=True)
        self._conn = conn
        store = PushStore(conn)
        row = next(r for r in await asyncio.to_thread(store.meters) if r.uri == self.sim.uri)
        self.reader = PushReader(row, store, PushConfig(interval_s=self._interval_s), clock=self._clock)
        self._task = asyncio.create_task(self.reader.run(), name=f"demo-push-{row.name}")

    async def step(self, now: float) -> None:
        """Move both clocks to ``now`` (see the module docstring)."""
        reader = self.reader
        assert reader is not None
        self.sim.clock.now = now
        made = self.sim.meter.pushes - self._lost  # every file up to this one was made at the old time
        if not await _until(lambda: reader.frames_seen >= made):
            self._lost += made - reader.frames_seen  # files that never arrived (a dropped link): count from here
        self._clock.now = now
        seen = reader.frames_seen
        if not await _until(lambda: reader.frames_seen > seen):
            self.late_steps += 1

    async def stop(self) -> None:
        """Stop the reader (a save under way finishes) and close its connection."""
        if self._task is not None and self.reader is not None:
            self.reader.request_stop()
            await stop_task(self._task)
        if self._conn is not None:
            await asyncio.to_thread(self._conn.close)
        if self.late_steps:
            log.warning(
                "demo SML meter: %d steps without a fresh file (their intervals are estimated)", self.late_steps
            )
