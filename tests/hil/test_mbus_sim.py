"""amiflow's M-Bus master reads the simulated M-Bus segment as it would a gateway and a level converter: over TCP
(``mbus+tcp://``) and over a pty (``mbus+serial://``, 2400 8E1 asked for, the pty carries it as 8N1), by primary
and secondary address, the wildcard search, through injected faults, and the ``amiflow sim mbus`` command itself."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import signal
import sys

import pytest

from amiflow.uri import parse_meter_uri
from protocols.mbus.client import mbus_target, open_master
from simulators.mbus_meter import MbusBusSimulator

NOW = 1_790_000_000.0
SEARCH = "heat:1:12000001,water:2:12000002,gas:3:50000003,electricity:4:60000004"


async def _read_all(uri_text: str) -> dict[str, set[str]]:
    uri = parse_meter_uri(uri_text)
    out = {}
    async with open_master(uri, timeout_s=0.3, retries=4) as bus:
        assert await bus.scan_primary(range(0, 6)) == [1, 2, 3, 4]
        for address in (1, 2, 3, 4):
            readout = await bus.read(address)
            assert readout.header is not None and not readout.issues
            out[readout.header.medium_name] = set(readout.batch(int(NOW)).obis)
        target = mbus_target(parse_meter_uri(uri_text + "?secondary=72003004"))
        readout = await bus.read(target)
        assert readout.header is not None and readout.header.manufacturer == "ABB"
    return out


def _check(kinds: dict[str, set[str]]) -> None:
    assert set(kinds) == {"heat", "water", "gas", "electricity"}
    assert {"6-0:1.8.0", "6-0:2.8.0", "6-0:10.7.0"} <= kinds["heat"] and "8-0:1.8.0" in kinds["water"]
    assert "7-0:3.8.0" in kinds["gas"] and {"1-0:1.8.0", "1-0:2.8.0"} <= kinds["electricity"]


async def test_master_reads_the_segment_over_tcp() -> None:
    async with MbusBusSimulator(clock=lambda: NOW) as sim:
        _check(await _read_all(sim.uri))


async def test_master_reads_the_segment_over_a_pty() -> None:
    async with MbusBusSimulator("pty", clock=lambda: NOW) as sim:
        assert sim.uri.startswith("mbus+serial:///dev/")
        _check(await _read_all(sim.uri))


async def test_wildcard_search_and_faults_over_tcp() -> None:
    faults = ["timeout", "bad_checksum", "noise", "truncate"]
    async with MbusBusSimulator(devices=SEARCH, faults=faults, fault_rate=0.15, clock=lambda: NOW) as sim:
        async with open_master(parse_meter_uri(sim.uri), timeout_s=0.2, retries=6) as bus:
            for _ in range(3):
                for address in (1, 2, 3, 4):
                    assert (await bus.read(address)).records
        assert sum(sim.faults_injected.values()) > 0
        sim.faults = ()
        async with open_master(parse_meter_uri(sim.uri), timeout_s=0.1, retries=1) as bus:
            assert await bus.scan_secondary() == ["12000001", "12000002", "50000003", "60000004"]


async def test_sim_mbus_command() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "amiflow_app", "sim", "mbus", "--listen", "tcp://127.0.0.1:0",
        "--devices", "water:9:11223344", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        match = re.search(r"(mbus\+tcp://\S+)", line)
        assert match, line
        async with open_master(parse_meter_uri(match[1]), timeout_s=0.5) as bus:
            readout = await bus.read("11223344")
            assert readout.header is not None and readout.header.medium_name == "water"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0


@pytest.mark.skipif(not os.path.exists("/dev/ptmx"), reason="no pseudo-terminals on this machine")
async def test_serial_defaults_are_2400_8e1() -> None:
    master = open_master(parse_meter_uri("mbus+serial:///dev/ttyUSB9"))
    assert master.link.settings == (2400, 8, "E", 1)  # type: ignore[attr-defined]
    master = open_master(parse_meter_uri("mbus+serial:///dev/ttyUSB9?baud=9600"))
    assert master.link.settings[0] == 9600  # type: ignore[attr-defined]


_PYMETERBUS_MASTER = """
import json, sys, serial, meterbus
ser = serial.serial_for_url(sys.argv[1], 2400, 8, "N", 1, timeout=1.0)
for address in (1, 2, 3, 4):
    meterbus.send_ping_frame(ser, address)
    assert meterbus.load(meterbus.recv_frame(ser, 1)) is not None
    meterbus.send_request_frame(ser, address)
    telegram = meterbus.load(meterbus.recv_frame(ser, meterbus.FRAME_DATA_LENGTH))
    records = [r.interpreted for r in telegram.body.bodyPayload.records]
    numbers = [r for r in records if r["value"] is not None and not isinstance(r["value"], str)
               and r["type"] not in ("VIFUnit.FABRICATION_NO", "None")]
    print(json.dumps([float(r["value"]) for r in numbers]))
"""


@pytest.mark.skipif(importlib.util.find_spec("meterbus") is None, reason="pyMeterBus (test extra) is not installed")
async def test_an_independent_master_reads_the_simulator_over_a_pty() -> None:
    """pyMeterBus's serial master (a child process, BSD-3-Clause) reads the same values off the pty as amiflow's."""
    async with MbusBusSimulator("pty", clock=lambda: NOW) as sim:
        assert sim.pty_path is not None
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _PYMETERBUS_MASTER, sim.pty_path, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        theirs = [json.loads(line) for line in out.decode().splitlines()]
        async with open_master(parse_meter_uri(sim.uri), timeout_s=0.5) as bus:
            ours = []
            for address in (1, 2, 3, 4):
                telegram = (await bus.read(address)).telegrams[0]
                ours.append([r.value for r in telegram.records if isinstance(r.value, float)])
    for a, b in zip(ours, theirs, strict=True):
        assert a == pytest.approx(b)
