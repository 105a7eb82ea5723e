"""The poller's scheduling, backfill, clock checks and failure handling, with in-memory meters on a real database.

The protocol adapters are tested against the simulators in tests/hil; here a fake session gives exact control of
time, outages and faults.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
import pytest

from amiflow.errors import ConnectError, FrameError
from amiflow.types import QualityFlag, ReadingBatch, Source
from amiflow.uri import MeterUri
from ingest.poll_store import PollStore
from ingest.poller import Poller, PollerConfig

T0 = 1_793_491_200  # 2026-11-01T00:00:00Z
STEP = 900


class FakeMeter:
    """A meter that holds a load profile of 1 Wh x (interval index) and registers; faults are switched by the test."""

    def __init__(self, name: str, *, has_profile: bool = True, clock_offset_s: float = 0.0) -> None:
        self.name = name
        self.has_profile = has_profile
        self.clock_offset_s = clock_offset_s
        self.down = False
        self.garbage = False
        self.now = float(T0)
        self.clock_sets = 0

    def energy(self, ts: np.ndarray) -> np.ndarray:
        return ((ts - T0) // STEP).astype(float) + 1.0


class FakeSession:
    def __init__(self, meter: FakeMeter) -> None:
        self.meter = meter
        self.has_profile = meter.has_profile

    async def __aenter__(self) -> FakeSession:
        if self.meter.down:
            raise ConnectError(f"meter {self.meter.name}: connection refused")
        return self

    async def __aexit__(self, *exc: Any) -> None:
        return None

    async def identify(self) -> dict[str, Any]:
        return {"serial": self.meter.name}

    async def read_clock(self) -> datetime | None:
        if self.meter.garbage:
            raise FrameError("bad HCS")
        return datetime.fromtimestamp(self.meter.now + self.meter.clock_offset_s, UTC) if self.has_profile else None

    async def set_clock(self, when: datetime) -> None:
        self.meter.clock_sets += 1
        self.meter.clock_offset_s = 0.0

    async def read_registers(self, at: datetime) -> ReadingBatch:
        ts = int(at.timestamp())
        register = float(self.meter.energy(np.arange(T0 + STEP, ts + 1, STEP)).sum())
        return ReadingBatch.from_columns(
            self.meter.name,
            ["1-0:1.8.0", "1-0:32.7.0"],
            [ts, ts],
            [register, 230.1],
            unit=np.array(["Wh", "V"], dtype=object),
            source=Source.MODBUS,
        )

    async def read_profile(self, after: datetime, until: datetime) -> ReadingBatch:
        # the meter only holds intervals up to its own "now"
        hi = min(int(until.timestamp()), int(self.meter.now // STEP * STEP))
        lo = max(int(after.timestamp()), T0)  # the meter was installed at T0
        ts = np.arange(lo + STEP, hi + 1, STEP, dtype=np.int64)
        return ReadingBatch.from_columns(
            self.meter.name, "1-0:1.29.0", ts, self.meter.energy(ts), unit="Wh", source=Source.DLMS
        )


def _setup(conn: psycopg.Connection[Any], meters: list[FakeMeter]) -> None:
    for i, m in enumerate(meters):
        uri = f"dlms+tcp://127.0.0.1:{4000 + i}" if m.has_profile else f"modbus+tcp://127.0.0.1:{5000 + i}?unit=1"
        conn.execute(
            "INSERT INTO amiflow.meters (name, protocol, uri) VALUES (%s, %s, %s)",
            (m.name, "dlms" if m.has_profile else "modbus", uri),
        )


def _poller(conn: psycopg.Connection[Any], meters: list[FakeMeter], **cfg: Any) -> Poller:
    by_name = {m.name: m for m in meters}

    def factory(name: str, uri: MeterUri, timeout_s: float) -> FakeSession:
        return FakeSession(by_name[name])

    config = PollerConfig(retries=1, retry_base_s=0.0, jitter_s=0.0, **cfg)
    return Poller(PollStore(conn), config, session_factory=factory)  # type: ignore[arg-type]


def _intervals(conn: psycopg.Connection[Any], meter: str) -> list[int]:
    rows = conn.execute(
        "SELECT extract(epoch FROM ts)::bigint FROM amiflow.v_readings WHERE meter = %s AND obis = '1-0:1.29.0'"
        " ORDER BY ts",
        (meter,),
    ).fetchall()
    return [r[0] for r in rows]


def test_a_day_with_an_outage_stores_every_interval_exactly_once(db_conn: psycopg.Connection[Any]) -> None:
    meters = [FakeMeter(f"D{i}") for i in range(20)]
    _setup(db_conn, meters)
    poller = _poller(db_conn, meters, breaker_threshold=100)

    async def day() -> None:
        for step in range(1, 97):
            now = T0 + step * STEP + 5
            for m in meters:
                m.now = now
                m.down = 32 <= step < 48 and int(m.name[1:]) % 2 == 0  # half the fleet is gone for 4 hours
            summary = await poller.poll_all(now)
            assert summary.polled == 20

    asyncio.run(day())
    expected = list(T0 + STEP * np.arange(1, 97))
    for m in meters:
        assert _intervals(db_conn, m.name) == expected, m.name
    backfilled = db_conn.execute(
        "SELECT count(*) FROM amiflow.readings WHERE quality & %s <> 0", (int(QualityFlag.BACKFILLED),)
    ).fetchone()
    assert backfilled == (10 * 16,)  # the 16 intervals of the outage for the 10 affected meters
    assert db_conn.execute("SELECT count(*) FROM amiflow.poll_state WHERE failures > 0").fetchone() == (0,)


def test_clock_drift_is_recorded_and_synced_only_when_told(db_conn: psycopg.Connection[Any]) -> None:
    meters = [FakeMeter("C1", clock_offset_s=95.0)]
    _setup(db_conn, meters)
    now = T0 + STEP + 5
    meters[0].now = now
    asyncio.run(_poller(db_conn, meters).poll_all(now))
    assert meters[0].clock_sets == 0
    check = db_conn.execute("SELECT offset_s, within_tolerance, synced FROM amiflow.clock_checks").fetchone()
    assert check == (pytest.approx(95.0, abs=1), False, False)
    flagged = db_conn.execute("SELECT quality FROM amiflow.v_readings WHERE obis = '1-0:1.29.0'").fetchone()
    assert flagged is not None and "clock_skew" in flagged[0]
    assert db_conn.execute("SELECT code FROM amiflow.meter_events").fetchone() == ("clock_drift",)
    asyncio.run(_poller(db_conn, meters, sync_clock=True).poll_all(now + STEP))
    assert meters[0].clock_sets == 1


def test_garbage_and_vanished_meters_cost_a_failed_poll_and_open_the_breaker(db_conn: psycopg.Connection[Any]) -> None:
    meters = [FakeMeter("G1"), FakeMeter("G2"), FakeMeter("OK")]
    _setup(db_conn, meters)
    meters[0].garbage = True
    meters[1].down = True
    poller = _poller(db_conn, meters, breaker_threshold=2, breaker_cooldown_s=3600)

    async def polls() -> list[Any]:
        out = []
        for step in (1, 2, 3):
            for m in meters:
                m.now = T0 + step * STEP + 5
            out.append(await poller.poll_all(T0 + step * STEP + 5))
        return out

    first, _, third = asyncio.run(polls())
    assert (first.ok, first.failed) == (1, 2)
    assert "FrameError" in first.errors["G1"] and "ConnectError" in first.errors["G2"]
    assert third.skipped == 2 and third.ok == 1  # the breaker keeps the two bad meters from costing more time
    states = dict(db_conn.execute("SELECT name, state FROM amiflow.meters").fetchall())
    assert states == {"G1": "offline", "G2": "offline", "OK": "online"}
    assert _intervals(db_conn, "OK") == [T0 + STEP, T0 + 2 * STEP, T0 + 3 * STEP]


def test_meters_without_a_profile_get_intervals_from_register_deltas(db_conn: psycopg.Connection[Any]) -> None:
    meters = [FakeMeter("R1", has_profile=False)]
    _setup(db_conn, meters)
    poller = _poller(db_conn, meters)

    async def polls() -> None:
        for step in (1, 2, 3, 5):  # step 4 is missed: no interval is invented for it or for step 5
            meters[0].now = T0 + step * STEP + 5
            await poller.poll_all(T0 + step * STEP + 5)

    asyncio.run(polls())
    rows = db_conn.execute(
        "SELECT extract(epoch FROM ts)::bigint, value FROM amiflow.v_readings WHERE obis = '1-0:1.29.0' ORDER BY ts"
    ).fetchall()
    assert rows == [(T0 + 2 * STEP, 3.0), (T0 + 3 * STEP, 4.0)]  # the register deltas: energy(k) = k + 1
