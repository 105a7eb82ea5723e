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


def _commission(
    db_url: str, tmp_path: Path, args: list[str], **sim: Any
) -> tuple[subprocess.CompletedProcess[str], Any]:
    """``amiflow commission {sim URI}{args[0]} args[1:]`` against a simulated segment; (the run, the simulator)."""

    async def serve(ready: asyncio.Event, sims: list[Any], stop: asyncio.Event) -> None:
        async with MbusBusSimulator(devices=DEVICES, **sim) as bus:
            sims.append(bus)
            ready.set()
            await stop.wait()

    async def main() -> tuple[subprocess.CompletedProcess[str], Any]:
        ready, stop, sims = asyncio.Event(), asyncio.Event(), list[Any]()
        task = asyncio.create_task(serve(ready, sims, stop))
        await ready.wait()
        env = {**os.environ, "AMIFLOW_DATA_DIR": str(tmp_path), "AMIFLOW_DATABASE_URL": db_url}  # stored there
        cmd = [sys.executable, "-m", "amiflow_app", "commission", f"{sims[0].uri}{args[0]}", *args[1:]]
        proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=-1, stderr=-1)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        stop.set()
        await task
        return subprocess.CompletedProcess(cmd, proc.returncode or 0, out.decode(), err.decode()), sims[0]

    return asyncio.run(main())


def test_commission_identifies_an_mbus_meter(db_url: str, tmp_path: Path) -> None:
    done, _sim = _commission(db_url, tmp_path, ["?address=2", "--format", "json"])
    assert done.stdout.strip(), done.stderr
    report = json.loads(done.stdout)
    assert report["identity"]["serial"] == "12000002", report["identity"]
    assert report["identity"]["medium"] == "water"
    checks = {c["name"]: c["status"] for c in report["checks"]}
    assert checks["connect"] == "pass" and checks["identify"] == "pass" and checks["read"] == "pass", checks
    assert report["verdict"].startswith("PASS"), (report["verdict"], report["checks"])


def test_commission_reads_an_encrypting_meter_with_its_key_file_and_registers_the_key(
    db_url: str, db_conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    from simulators.mbus_devices import parse_devices

    key = next(d for d in parse_devices(DEVICES, seed=3, encrypt=True) if d.address == 1).key
    assert key is not None
    key_file = tmp_path / "heat1.key"
    key_file.write_text(key.hex() + "\n")
    args = ["?address=1", "--format", "json", "--register", "--meter", "HEAT1", "--key-file", str(key_file)]
    done, sim = _commission(db_url, tmp_path, args, encrypt=True, seed=3)
    assert next(s for s in sim.slaves if s.address == 1).key == key  # the simulator's meter holds that key
    report = json.loads(done.stdout)
    assert report["verdict"].startswith("PASS"), (report["verdict"], report["checks"])
    assert "meter HEAT1 registered with its AES key" in done.stderr
    assert key.hex() not in done.stdout + done.stderr and key.hex().upper() not in done.stdout + done.stderr
    from amiflow.db.meter_keys import has_meter_key

    assert has_meter_key(db_conn, "HEAT1")

    without, _sim = _commission(db_url, tmp_path, ["?address=1", "--format", "json"], encrypt=True, seed=3)
    assert without.returncode == 1  # encrypted and no key: a failed sheet that says so, not a traceback
    assert "Traceback" not in without.stderr
    failed = [c for c in json.loads(without.stdout)["checks"] if c["status"] == "fail"]
    assert failed and any("key" in c["detail"] or "encrypt" in c["detail"] for c in failed), failed

    wrong_file = tmp_path / "wrong.key"
    wrong_file.write_text(bytes(b ^ 0x5A for b in key).hex())
    wrong = _commission(db_url, tmp_path, ["?address=1", "--key-file", str(wrong_file)], encrypt=True, seed=3)[0]
    assert wrong.returncode == 1 and "FAIL" in wrong.stdout and "Traceback" not in wrong.stderr, wrong
    assert bytes(b ^ 0x5A for b in key).hex() not in wrong.stdout + wrong.stderr

    modbus = subprocess.run(
        [sys.executable, "-m", "amiflow_app", "commission", "modbus+tcp://127.0.0.1:1?unit=1", "--key-file",
         str(key_file)], capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert modbus.returncode != 0 and "--key-file: modbus meters take no AES key" in modbus.stderr, modbus.stderr
