"""IEC 62056-21 client against the simulator over TCP and a pty: values from the load model, the simulated clock,
every fault turned into a one-line error naming the URI, the CLI simulator in its own process, and the poller's
session on top."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime

import numpy as np
import pytest

from amiflow.errors import FrameError, ReadTimeout
from amiflow.uri import parse_meter_uri
from protocols.iec62056_21 import read_iec62056_21
from simulators.iec62056_21 import IecSimulator
from simulators.load import LoadModel

NOW = 1_790_000_000.0  # 2026-09-21T14:13:20Z
LISTEN = ["tcp://127.0.0.1:0", "pty"]


@pytest.mark.parametrize("listen", LISTEN)
async def test_readout_matches_the_load_model(listen: str) -> None:
    sim = IecSimulator(listen, seed=7, meter_index=3, clock=lambda: NOW, drift_s=-42.0, tz="Europe/Amsterdam")
    async with sim:
        uri = parse_meter_uri(sim.uri + "?tz=Europe/Amsterdam&meter=M3")
        first = await read_iec62056_21(uri, timeout_s=2.0)
        second = await read_iec62056_21(uri, timeout_s=2.0)  # the meter serves readout after readout
    assert first.identification == "AMF5\\2SIM-IEC1" and first.manufacturer == "AMF"
    assert first.serial == "71000003" and first.baudrate == 9600
    assert first.clock == datetime.fromtimestamp(NOW - 42, UTC)
    values = dict(zip(first.readings.obis, first.readings.value, strict=True))
    want = float(LoadModel(7).register_wh(3, int(NOW - 42)).reshape(-1)[0])
    assert values["1-0:1.8.0"] == want
    assert {"1-0:2.8.0", "1-0:1.7.0", "1-0:32.7.0", "1-0:31.7.0"} <= set(values)
    assert 207 <= values["1-0:32.7.0"] <= 253
    assert abs(values["1-0:31.7.0"] * values["1-0:32.7.0"] - values["1-0:1.7.0"]) < 0.01 * values["1-0:32.7.0"] + 1
    assert set(first.readings.meter) == {"M3"}
    assert first.raw.startswith(b"\x02") and np.array_equal(first.readings.value, second.readings.value)
    assert sim.readouts == 2


async def test_settable_clock_moves_the_registers() -> None:
    now = [NOW]
    async with IecSimulator(clock=lambda: now[0]) as sim:
        uri = parse_meter_uri(sim.uri)
        before = await read_iec62056_21(uri, timeout_s=2.0)
        now[0] += 6 * 3600
        sim.set_clock(NOW)  # the meter's clock is set back: registers follow its clock
        after = await read_iec62056_21(uri, timeout_s=2.0)
    assert after.clock == before.clock
    assert after.readings.value[0] == before.readings.value[0]
    assert sim.drift_s == -6 * 3600


FAULTS = [
    ("timeout", ReadTimeout, "no answer"),
    ("bad_bcc", FrameError, "BCC mismatch"),
    ("truncate", FrameError, "truncated"),
    ("garbage", FrameError, "noise and no identification"),
]


@pytest.mark.parametrize("listen", LISTEN)
@pytest.mark.parametrize(("fault", "error", "match"), FAULTS, ids=[f[0] for f in FAULTS])
async def test_each_fault_is_a_clear_error(listen: str, fault: str, error: type[Exception], match: str) -> None:
    async with IecSimulator(listen, faults=[fault], clock=lambda: NOW) as sim:
        with pytest.raises(error, match=match) as info:
            await read_iec62056_21(parse_meter_uri(sim.uri), timeout_s=0.3)
        assert sim.uri in str(info.value) and "\n" not in str(info.value)
        assert sim.faults_injected == {fault: 1}


@pytest.mark.parametrize("listen", LISTEN)
async def test_noise_before_answers_is_skipped(listen: str) -> None:
    async with IecSimulator(listen, faults=["noise"], clock=lambda: NOW) as sim:
        readout = await read_iec62056_21(parse_meter_uri(sim.uri), timeout_s=1.0)
    assert readout.serial == "71000000" and len(readout.readings) == 5


async def test_fault_rate_and_recovery_on_one_pty() -> None:
    """Half the sessions fail; the next sign-on on the same line still works (the meter resets after silence)."""
    async with IecSimulator("pty", faults=["timeout", "bad_bcc"], fault_rate=0.5, seed=3, clock=lambda: NOW) as sim:
        uri = parse_meter_uri(sim.uri)
        ok = failed = 0
        for _ in range(6):
            try:
                await read_iec62056_21(uri, timeout_s=0.3)
                ok += 1
            except (ReadTimeout, FrameError):
                failed += 1
                await asyncio.sleep(0.1)
    assert ok and failed and ok + failed == 6
    assert sum(sim.faults_injected.values()) == failed


async def test_address_selects_the_meter() -> None:
    async with IecSimulator(address="0042", clock=lambda: NOW) as sim:
        readout = await read_iec62056_21(parse_meter_uri(sim.uri + "?address=0042"), timeout_s=1.0)
        assert readout.serial == "71000000"
        with pytest.raises(ReadTimeout):
            await read_iec62056_21(parse_meter_uri(sim.uri + "?address=0099"), timeout_s=0.3)


async def test_cli_simulator_in_its_own_process() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "amiflow_app",
            "sim",
            "iec62056-21",
            "--listen",
            "tcp://127.0.0.1:0",
            "--serial",
            "S1",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)
        uri = line.strip().rsplit(" ", 1)[-1]
        assert uri.startswith("iec62056-21+tcp://127.0.0.1:")
        readout = await read_iec62056_21(parse_meter_uri(uri), timeout_s=2.0)
        assert readout.serial == "S1"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


async def test_poller_session_reads_the_simulator() -> None:
    from ingest.meter_sessions import open_session

    async with IecSimulator("pty", clock=lambda: NOW) as sim:
        session = open_session("M9", parse_meter_uri(sim.uri), 2.0)
        async with session:
            ident = await session.identify()
            clock = await session.read_clock()
            batch = await session.read_registers(datetime.fromtimestamp(NOW, UTC))
    assert ident["serial"] == "71000000"
    assert clock == datetime.fromtimestamp(NOW, UTC)
    assert set(batch.meter) == {"M9"} and "1-0:1.8.0" in set(batch.obis)
