"""M-Bus meters end to end: a simulated segment (heat, water, gas, electricity meters on one gateway) registered
with ``mbus+tcp://`` URIs is polled into PostgreSQL in base units with its own source, and ``amiflow commission``
identifies a meter on it (ident number, manufacturer, medium) and reads its start registers."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from amiflow.db.registry import MeterRecord, add_meter
from ingest.poll_store import PollStore
from ingest.poller import Poller, PollerConfig
from simulators.mbus_meter import MbusBusSimulator

DEVICES = "heat:1:12000001,water:2:12000002,gas:3:50000003,electricity:4:60000004"


def test_the_poller_stores_an_mbus_segment(db_conn: psycopg.Connection[Any]) -> None:
    async def run() -> Any:
        async with MbusBusSimulator(devices=DEVICES) as sim:
            for address, name in ((1, "HEAT1"), (2, "WATER2"), (3, "GAS3"), (4, "ELEC4")):
                add_meter(db_conn, MeterRecord(name=name, protocol="mbus", uri=f"{sim.uri}?address={address}"))
            config = PollerConfig(retries=2, retry_base_s=0.0, jitter_s=0.0, timeout_s=1.0)
            poller = Poller(PollStore(db_conn), config)
            return await poller.poll_all(time.time())

    summary = asyncio.run(run())
    assert summary.ok == 4 and summary.failed == 0, summary
    rows = db_conn.execute("SELECT meter, obis, unit, source FROM amiflow.v_readings ORDER BY meter, obis").fetchall()
    by_meter: dict[str, set[tuple[str, str]]] = {}
    for meter, obis, unit, source in rows:
        assert source == "mbus"
        by_meter.setdefault(meter, set()).add((obis, unit))
    assert ("6-0:1.8.0", "Wh") in by_meter["HEAT1"]  # heat energy, J/kWh/GJ converted to Wh
    assert ("8-0:1.8.0", "m3") in by_meter["WATER2"] and ("7-0:3.8.0", "m3") in by_meter["GAS3"]
    assert ("1-0:1.8.0", "Wh") in by_meter["ELEC4"]


def test_commission_identifies_an_mbus_meter(db_url: str, tmp_path: Path) -> None:
    async def serve(ready: asyncio.Event, uri: list[str], stop: asyncio.Event) -> None:
        async with MbusBusSimulator(devices=DEVICES) as sim:
            uri.append(sim.uri)
            ready.set()
            await stop.wait()

    async def main() -> subprocess.CompletedProcess[str]:
        ready, stop, uri = asyncio.Event(), asyncio.Event(), []
        task = asyncio.create_task(serve(ready, uri, stop))
        await ready.wait()
        env = {**os.environ, "AMIFLOW_DATA_DIR": str(tmp_path), "AMIFLOW_DATABASE_URL": db_url}  # stored there
        cmd = [sys.executable, "-m", "amiflow_app", "commission", f"{uri[0]}?address=2", "--format", "json"]
        proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=-1, stderr=-1)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        stop.set()
        await task
        return subprocess.CompletedProcess(cmd, proc.returncode or 0, out.decode(), err.decode())

    done = asyncio.run(main())
    assert done.stdout.strip(), done.stderr
    report = json.loads(done.stdout)
    assert report["identity"]["serial"] == "12000002", report["identity"]
    assert report["identity"]["medium"] == "water"
    checks = {c["name"]: c["status"] for c in report["checks"]}
    assert checks["connect"] == "pass" and checks["identify"] == "pass" and checks["read"] == "pass", checks
    assert report["verdict"].startswith("PASS"), (report["verdict"], report["checks"])
