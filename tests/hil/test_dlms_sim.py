"""DlmsClient against the DLMS simulator: TCP wrapper, HDLC on TCP and on a pty, access rights, block transfer,
and every fault kind (recovered by HDLC retransmission, or reported as one line naming the meter URI)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from amiflow.errors import ConnectError, FrameError, ProtocolError, ReadTimeout, TransportError
from amiflow.types import Source
from amiflow.uri import parse_meter_uri
from protocols.dlms import ControlState, DlmsClient, axdr
from protocols.dlms.ciphering import Ciphering
from protocols.dlms.counters import FileCounterStore, MemoryCounterStore
from protocols.dlms.disconnect import Trigger
from protocols.dlms.security import SecurityKeys
from simulators.dlms import DEFAULT_KEYS, DlmsSimulator
from simulators.load import LoadModel

pytestmark = pytest.mark.timeout(60)
START = datetime(2026, 1, 10, tzinfo=UTC)
NOW = START + timedelta(days=3, hours=5, minutes=7)


def _clock() -> float:
    return NOW.timestamp()


def _uri(sim: DlmsSimulator, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return sim.uri + ("?" + query if query else "")


@pytest.fixture
async def wrapper_sim() -> AsyncIterator[DlmsSimulator]:
    async with DlmsSimulator(auth="lls", password=b"secret", start=START, clock=_clock, meter="D0001") as sim:
        yield sim


async def test_tcp_wrapper_reads_everything(wrapper_sim: DlmsSimulator) -> None:
    async with DlmsClient(parse_meter_uri(_uri(wrapper_sim, meter="D0001")), timeout_s=2) as meter:
        ident = await meter.identify()
        assert ident["serial"] == "D0001" and ident["manufacturer"] == "AMF" and ident["firmware"]
        energy, unit = await meter.read_register("1-0:1.8.0")
        assert unit == "Wh" and energy == float(int(LoadModel(1).register_wh(0, int(NOW.timestamp()))))
        volts, vunit = await meter.read_register("1-0:32.7.0")
        assert vunit == "V" and 207 <= volts <= 253 and volts == round(volts, 1)
        assert abs((await meter.read_clock()) - NOW) < timedelta(seconds=1)
        batch = await meter.read_profile("1-0:99.1.0", START + timedelta(days=1), START + timedelta(days=2))
    imports = batch.take(batch.obis == "1-0:1.29.0")
    assert len(imports) == 96 and len(batch) == 192  # import and export columns, start exclusive, end inclusive
    assert imports.ts[0] == int((START + timedelta(days=1, minutes=15)).timestamp())
    assert (np.diff(imports.ts) == 900).all() and (imports.source == Source.DLMS).all()
    expected = LoadModel(1).interval_energy_wh(0, imports.ts).astype(np.int64)
    assert np.array_equal(imports.value, expected.astype(np.float64))
    assert set(batch.meter) == {"D0001"} and set(batch.unit) == {"Wh"}


async def test_long_profile_in_blocks_with_register_columns_and_null_compression() -> None:
    async with (
        DlmsSimulator(start=START, clock=_clock, register_profile=True, compress_rows=True, max_pdu=256) as sim,
        DlmsClient(parse_meter_uri(sim.uri), timeout_s=2) as meter,
    ):
        batch = await meter.read_profile("1-0:99.1.0", START, NOW)
    reg = batch.take(batch.obis == "1-0:1.8.0")
    assert len(reg) == (int(NOW.timestamp()) - int(START.timestamp())) // 900
    assert (np.diff(reg.ts) == 900).all() and (np.diff(reg.value) >= 0).all()
    assert reg.value[-1] == float(int(LoadModel(1).register_wh(0, int(reg.ts[-1]))))


async def test_access_rights_and_disconnect_modes(wrapper_sim: DlmsSimulator) -> None:
    public = parse_meter_uri(wrapper_sim.uri)
    async with DlmsClient(public, timeout_s=2) as meter:
        with pytest.raises(ProtocolError, match=r"127\.0\.0\.1.*read-write-denied"):
            await meter.disconnect()
        with pytest.raises(ProtocolError, match="read-write-denied"):
            await meter.set_clock(NOW)
        assert await meter.read_disconnect_state() == (True, ControlState.CONNECTED, 1)
    manage = parse_meter_uri(_uri(wrapper_sim, client="1"))
    async with DlmsClient(manage, password=b"secret", timeout_s=2) as meter:
        await meter.disconnect()
        await meter.disconnect()  # idempotent
        assert await meter.read_disconnect_state() == (False, ControlState.DISCONNECTED, 1)
        assert await meter.read_register("1-0:1.7.0") == (0.0, "W")
        await meter.set(70, "0-0:96.3.10", 4, axdr.Enum(2))
        await meter.reconnect()  # mode 2: only arms the relay
        assert await meter.read_disconnect_state() == (False, ControlState.READY_FOR_RECONNECTION, 2)
        assert wrapper_sim.meter.trigger(Trigger.MANUAL_RECONNECT)  # the customer presses the button
        assert await meter.read_disconnect_state() == (True, ControlState.CONNECTED, 2)
        events = await meter.read_events(START - timedelta(hours=1), NOW + timedelta(hours=1))
    assert [e.code for e in events] == [2, 70, 71, 72]


async def test_disconnected_meter_records_no_load() -> None:
    clock = [NOW.timestamp()]
    async with DlmsSimulator(start=START, clock=lambda: clock[0]) as sim:
        uri = parse_meter_uri(_uri(sim, client="1"))
        async with DlmsClient(uri, timeout_s=2) as meter:  # --auth none: the management client needs no password
            await meter.disconnect()
        clock[0] += 3 * 3600
        async with DlmsClient(uri, timeout_s=2) as meter:
            await meter.reconnect()
            batch = await meter.read_profile("1-0:99.1.0", NOW, datetime.fromtimestamp(clock[0], UTC))
    imports = batch.take(batch.obis == "1-0:1.29.0")
    assert len(imports) == 12 and (imports.value[1:] == 0).all()


async def test_refused_associations_name_the_reason(wrapper_sim: DlmsSimulator) -> None:
    manage = parse_meter_uri(_uri(wrapper_sim, client="1"))
    with pytest.raises(ConnectError, match=r"client=1: association refused .*authentication-failure"):
        async with DlmsClient(manage, password=b"wrong", timeout_s=2):
            pass
    with pytest.raises(ConnectError, match="authentication-mechanism-name-required"):
        async with DlmsClient(parse_meter_uri(_uri(wrapper_sim, client="1")), timeout_s=2):
            pass
    with pytest.raises(ConnectError, match="association refused"):
        async with DlmsClient(parse_meter_uri(_uri(wrapper_sim, client="5")), timeout_s=2):
            pass


async def test_hdlc_on_a_pty() -> None:
    async with DlmsSimulator("pty", start=START, clock=_clock) as sim:
        assert sim.uri.startswith("dlms+hdlc:///dev/")
        for _ in range(2):  # two sessions one after the other on the same line
            async with DlmsClient(parse_meter_uri(sim.uri), timeout_s=2) as meter:
                assert (await meter.identify())["serial"] == sim.meter.serial
                batch = await meter.read_profile("1-0:99.1.0", START, START + timedelta(days=1))
                assert len(batch) == 2 * 96


async def test_hdlc_recovers_from_every_fault_by_retransmission() -> None:
    faults = "timeout=0.1,bad_crc=0.1,truncate=0.1"
    sim = DlmsSimulator(hdlc=True, start=START, clock=_clock, faults=faults, seed=7)
    async with sim, DlmsClient(parse_meter_uri(sim.uri), timeout_s=0.3, retries=6) as meter:
        batch = await meter.read_profile("1-0:99.1.0", START, START + timedelta(days=1))
        assert len(batch) == 2 * 96
        assert (await meter.identify())["serial"] == sim.meter.serial
    assert {"timeout", "bad_crc", "truncate"} <= set(sim.faults_injected)


@pytest.mark.parametrize(
    ("faults", "error", "pattern"),
    [
        ("timeout=1", ReadTimeout, "no answer"),
        ("truncate=1", ReadTimeout, "incomplete answer"),
        ("bad_crc=1", FrameError, "wrapper: bad version 0002"),
    ],
)
async def test_wrapper_faults_are_one_line_errors(faults: str, error: type[Exception], pattern: str) -> None:
    async with DlmsSimulator(start=START, clock=_clock, faults=faults) as sim:
        with pytest.raises(error, match=re.escape(sim.uri) + ".*" + pattern) as info:
            async with DlmsClient(parse_meter_uri(sim.uri), timeout_s=0.3):
                pass
    assert "\n" not in str(info.value)


async def test_hdlc_faults_at_every_answer_fail_to_connect() -> None:
    for faults in ("timeout=1", "bad_crc=1", "truncate=1"):
        async with DlmsSimulator(hdlc=True, start=START, clock=_clock, faults=faults) as sim:
            with pytest.raises(ConnectError, match=re.escape(sim.uri) + ": no UA answer to SNRM"):
                async with DlmsClient(parse_meter_uri(sim.uri), timeout_s=0.2, retries=1):
                    pass


async def test_exception_responses_and_clock_drift() -> None:
    sim = DlmsSimulator(start=START, clock=_clock, faults="exception=1,clock_drift=120")
    async with sim, DlmsClient(parse_meter_uri(sim.uri), timeout_s=1) as meter:
        with pytest.raises(ProtocolError, match="exception-response: service-not-allowed"):
            await meter.read_clock()
        sim.faults = type(sim.faults)(clock_drift=120)
        drift = (await meter.read_clock()) - NOW  # the connection stays usable after an exception
    assert timedelta(seconds=119) <= drift <= timedelta(seconds=121)


async def test_wrapper_timeout_poisons_the_connection() -> None:
    sim = DlmsSimulator(start=START, clock=_clock)
    async with sim, DlmsClient(parse_meter_uri(sim.uri), timeout_s=0.3) as meter:
        sim.faults = type(sim.faults)(timeout=1.0)
        with pytest.raises(ReadTimeout):
            await meter.read_clock()
        sim.faults = type(sim.faults)()
        with pytest.raises(TransportError, match="reopen"):
            await meter.read_clock()


def test_cli_prints_its_port_and_serves() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "amiflow_app", "sim", "dlms", "--listen", "tcp://127.0.0.1:0", "--meter", "CLI1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 20
        line = ""
        while time.monotonic() < deadline and "listening" not in line:
            line = proc.stdout.readline()
        m = re.search(r"(dlms\+tcp://127\.0\.0\.1:\d+)", line)
        assert m, line

        async def ask() -> dict[str, str | None]:
            async with DlmsClient(parse_meter_uri(m.group(1)), timeout_s=2) as meter:
                return await meter.identify()

        assert asyncio.run(ask())["serial"] == "CLI1"
    finally:
        proc.terminate()
        proc.wait(10)


async def test_hls_gmac_ciphered_session_and_persisted_counters(tmp_path: Path) -> None:
    store = FileCounterStore(tmp_path / "invocation-counters.json")
    security = Ciphering(b"AMFHEAD1", DEFAULT_KEYS, store)
    async with DlmsSimulator(auth="hls-gmac", start=START, clock=_clock, max_pdu=256) as sim:
        uri = parse_meter_uri(_uri(sim, client="1"))
        async with DlmsClient(uri, security=security, timeout_s=2) as meter:
            assert (await meter.identify())["serial"] == sim.meter.serial
            batch = await meter.read_profile("1-0:99.1.0", START, START + timedelta(days=1))  # ciphered GET blocks
            assert len(batch) == 2 * 96
            await meter.disconnect()
            assert (await meter.read_disconnect_state())[1] == ControlState.DISCONNECTED
        # a new client process with the same file continues above the counters the meter has seen
        again = Ciphering(b"AMFHEAD1", DEFAULT_KEYS, FileCounterStore(tmp_path / "invocation-counters.json"))
        async with DlmsClient(uri, security=again, timeout_s=2) as meter:
            await meter.reconnect()
        forgetful = Ciphering(b"AMFHEAD1", DEFAULT_KEYS, MemoryCounterStore())  # counters restart at 0: replay
        with pytest.raises(ConnectError, match=r"association refused .*authentication-failure"):
            async with DlmsClient(uri, security=forgetful, timeout_s=2):
                pass
        wrong = Ciphering(b"AMFHEAD2", SecurityKeys(bytes(16), bytes(16)), MemoryCounterStore())
        with pytest.raises(ConnectError, match=r"association refused .*authentication-failure"):
            async with DlmsClient(uri, security=wrong, timeout_s=2):
                pass
        with pytest.raises(ConnectError, match="authentication-mechanism-name-required"):
            async with DlmsClient(uri, password=b"secret", timeout_s=2):
                pass
