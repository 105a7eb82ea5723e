"""Profile reads at the edges of what a meter holds, and the poller surviving an adapter's unexpected error."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import psycopg

from amiflow.uri import MeterUri, parse_meter_uri
from ingest.poll_store import PollStore
from ingest.poller import Poller, PollerConfig
from protocols.dlms import DlmsClient
from simulators.dlms import DlmsSimulator

T0 = 1_793_491_200


def test_a_range_before_the_profile_starts_is_an_empty_batch() -> None:
    async def go() -> int:
        sim = DlmsSimulator(start=datetime.fromtimestamp(T0, UTC), clock=lambda: T0 + 3600)
        await sim.start()
        try:
            async with DlmsClient(parse_meter_uri(sim.uri)) as client:
                before = await client.read_profile(
                    "1-0:99.1.0", datetime.fromtimestamp(T0 - 86400, UTC), datetime.fromtimestamp(T0 - 3600, UTC)
                )
                inside = await client.read_profile(
                    "1-0:99.1.0", datetime.fromtimestamp(T0, UTC), datetime.fromtimestamp(T0 + 3600, UTC)
                )
                assert len(inside) > 0
                return len(before)
        finally:
            await sim.stop()

    assert asyncio.run(go()) == 0


class Broken:
    has_profile = True

    async def __aenter__(self) -> Broken:
        raise IndexError("a bug in an adapter")

    async def __aexit__(self, *exc: Any) -> None:
        return None


def test_an_adapter_bug_costs_one_failed_poll_not_the_poller(db_conn: psycopg.Connection[Any]) -> None:
    db_conn.execute("INSERT INTO amiflow.meters (name, protocol, uri) VALUES ('B1', 'dlms', 'dlms+tcp://127.0.0.1:1')")

    def factory(name: str, uri: MeterUri, timeout_s: float) -> Broken:
        return Broken()

    poller = Poller(PollStore(db_conn), PollerConfig(), session_factory=factory)  # type: ignore[arg-type]
    summary = asyncio.run(poller.poll_all(float(T0 + 905)))
    assert summary.failed == 1 and "internal error: IndexError" in summary.errors["B1"]
