"""Encrypted wired M-Bus meters (OMS security mode 5) polled with their keys from the registry: the poller's
session factory (ingest.mbus_keys.registry_sessions) looks each meter's key up in amiflow.meter_keys, so the
values decode and are stored; a meter with a wrong key or none fails its poll with one line naming the meter, and
no key shows in the outcome or the logs."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import psycopg
import pytest

from amiflow.db.meter_keys import MeterKey, set_meter_key
from amiflow.db.registry import MeterRecord, add_meter
from ingest.mbus_keys import registry_sessions
from ingest.poll_store import PollStore
from ingest.poller import Poller, PollerConfig
from simulators.mbus_devices import sim_key
from simulators.mbus_meter import MbusBusSimulator

DEVICES = "heat:1:31000001,water:2:31000002,gas:3:31000003"
SEED = 5


def test_encrypted_meters_decode_with_their_registry_keys(
    db_url: str, db_conn: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = bytes(reversed(sim_key(SEED, "31000003")))

    async def run() -> Any:
        async with MbusBusSimulator(devices=DEVICES, seed=SEED, encrypt=True) as sim:
            for address, name in ((1, "HEAT1"), (2, "WATER2"), (3, "GAS3")):
                add_meter(db_conn, MeterRecord(name=name, protocol="mbus", uri=f"{sim.uri}?address={address}"))
            set_meter_key(db_conn, "HEAT1", MeterKey(sim_key(SEED, "31000001")))
            set_meter_key(db_conn, "GAS3", MeterKey(wrong))  # WATER2 has no key
            config = PollerConfig(retries=2, retry_base_s=0.0, jitter_s=0.0, timeout_s=1.0)
            poller = Poller(PollStore(db_conn), config, session_factory=registry_sessions(db_url))
            return await poller.poll_all(time.time())

    summary = asyncio.run(run())
    assert (summary.ok, summary.failed) == (1, 2), summary
    rows = db_conn.execute("SELECT meter, obis, unit FROM amiflow.v_readings ORDER BY obis").fetchall()
    assert {m for m, _, _ in rows} == {"HEAT1"} and ("HEAT1", "6-0:1.8.0", "Wh") in rows
    water, gas = summary.errors["WATER2"], summary.errors["GAS3"]
    assert water.startswith("ConfigError: meter WATER2:") and "no key is known" in water and "\n" not in water
    assert gas.startswith("ConfigError: meter GAS3:") and "does not decrypt" in gas and "set-key" in gas
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for key in (sim_key(SEED, "31000001"), wrong, sim_key(SEED, "31000003")):
        for text in (water, gas, logged, repr(summary)):
            assert key.hex() not in text.lower() and key.hex(" ") not in text.lower()
    failures = db_conn.execute("SELECT count(*) FROM amiflow.poll_state WHERE failures > 0").fetchone()
    assert failures == (2,)  # each failed poll recorded against its meter
