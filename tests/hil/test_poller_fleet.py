"""The poller over 200 simulated DLMS meters (TCP wrapper) for a simulated day with a network outage in the middle:
every interval the meters hold is stored exactly once, and the missed ones are backfilled (issue 4's done-when)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg

from ingest.poll_store import PollStore
from ingest.poller import Poller, PollerConfig
from simulators.dlms import DlmsSimulator

T0 = 1_793_491_200  # 2026-11-01T00:00:00Z
METERS = 200
HOURS = 24
OUTAGE = range(8, 12)  # hours during which no meter answers


class SimClock:
    def __init__(self) -> None:
        self.now = float(T0)

    def __call__(self) -> float:
        return self.now


def test_a_day_of_200_dlms_meters_with_an_outage(db_conn: psycopg.Connection[Any]) -> None:
    clock = SimClock()
    start = datetime.fromtimestamp(T0, UTC)

    def make(i: int, port: int = 0) -> DlmsSimulator:
        return DlmsSimulator(f"tcp://127.0.0.1:{port}", meter_index=i, seed=7, start=start, clock=clock)

    async def day() -> dict[str, int]:
        sims = [make(i) for i in range(METERS)]
        for sim in sims:
            await sim.start()
        for i, sim in enumerate(sims):
            db_conn.execute(
                "INSERT INTO amiflow.meters (name, protocol, uri) VALUES (%s, 'dlms', %s)", (f"DL{i:03d}", sim.uri)
            )
        ports = [sim.port for sim in sims]
        poller = Poller(
            PollStore(db_conn),
            PollerConfig(
                timeout_s=2.0, retries=0, jitter_s=0.0, breaker_threshold=2, breaker_cooldown_s=5400, concurrency=50
            ),
            clock=clock,
        )
        totals = {"ok": 0, "failed": 0, "skipped": 0}
        for hour in range(1, HOURS + 1):
            clock.now = T0 + hour * 3600 + 20
            if hour == OUTAGE.start:
                for sim in sims:
                    await sim.stop()
            if hour == OUTAGE.stop:
                sims = [make(i, ports[i]) for i in range(METERS)]
                for sim in sims:
                    await sim.start()
            summary = await poller.poll_all()
            totals["ok"] += summary.ok
            totals["failed"] += summary.failed
            totals["skipped"] += summary.skipped
        for sim in sims:
            await sim.stop()
        return totals

    totals = asyncio.run(day())
    assert sum(totals.values()) == METERS * HOURS
    assert totals["failed"] >= METERS * 2  # the breaker opens after two failures ...
    assert totals["skipped"] > 0  # ... and spares the dead meters polls until its cool-down passes
    counts = db_conn.execute(
        "SELECT count(*), count(DISTINCT (meter_id, ts)), min(ts), max(ts) FROM amiflow.readings WHERE channel_id = 1"
    ).fetchone()
    assert counts is not None
    assert counts[0] == counts[1] == METERS * HOURS * 4  # every interval of the day, once
    assert counts[2] == datetime.fromtimestamp(T0 + 900, UTC) and counts[3] == datetime.fromtimestamp(T0 + 86400, UTC)
    per_meter = db_conn.execute(
        "SELECT count(*) FROM amiflow.readings WHERE channel_id = 1 GROUP BY meter_id"
    ).fetchall()
    assert {r[0] for r in per_meter} == {HOURS * 4}
    # every interval of the outage hours came later, from the meters' profiles, flagged as backfilled
    lo, hi = T0 + (OUTAGE.start - 1) * 3600, T0 + (OUTAGE.stop - 1) * 3600
    flagged = db_conn.execute(
        "SELECT count(*) FILTER (WHERE quality & 1024 <> 0), count(*) FROM amiflow.readings WHERE channel_id = 1"
        " AND ts > to_timestamp(%s) AND ts <= to_timestamp(%s)",
        (lo, hi),
    ).fetchone()
    assert flagged == (METERS * len(OUTAGE) * 4, METERS * len(OUTAGE) * 4)
    assert np.isfinite(
        db_conn.execute("SELECT sum(value) FROM amiflow.readings WHERE channel_id = 1").fetchone()[0]  # type: ignore[index]
    )
