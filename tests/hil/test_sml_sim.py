"""The SML push-meter simulator read as a real reader would: bytes off TCP (and a pty) into amiflow's streaming
decoder, every good file decoded to the load model's values under the nameplate meter id, every injected fault a
counted bad frame or skipped noise, never a lost good file after it."""

from __future__ import annotations

import asyncio
import os
import tty

import pytest

from amiflow.errors import ConfigError
from protocols.sml import SmlFrame, SmlStreamDecoder, parse_messages, sml_readings
from simulators.sml_meter import SmlSimulator
from simulators.sml_profiles import SmlMeter

NOW = 1_790_000_000.0  # 2026-09-21T14:13:20Z
FAST = (0.005, 0.02)


async def _read_tcp(sim: SmlSimulator, pushes: int) -> bytes:
    reader, writer = await asyncio.open_connection(sim.host, sim.port)
    data = b""
    try:
        while sim.meter.pushes < pushes:
            chunk = await asyncio.wait_for(reader.read(4096), 5.0)
            assert chunk, "the simulator closed the connection"
            data += chunk
        data += await asyncio.wait_for(reader.read(4096), 1.0)  # the bytes of the last push still in flight
    finally:
        writer.close()
    return data


def _decode(data: bytes) -> tuple[list[SmlFrame], SmlStreamDecoder]:
    dec = SmlStreamDecoder()
    for i in range(0, len(data), 97):  # in chunks, as a serial line delivers them
        dec.receive_data(data[i : i + 97])
    frames = [e for e in iter(dec.next_event, None) if isinstance(e, SmlFrame)]
    return frames, dec


@pytest.mark.parametrize("profile", ["ehz", "itron", "easymeter"])
async def test_tcp_pushes_decode_to_the_load_model(profile: str) -> None:
    async with SmlSimulator(profile=profile, seed=7, meter_index=3, interval_s=FAST, clock=lambda: NOW) as sim:
        data = await _read_tcp(sim, 5)
    frames, dec = _decode(data)
    assert len(frames) >= 5 and dec.faults == 0 and dec.skipped == 0
    imp, exp = sim.meter.registers_wh(int(NOW))
    for frame in frames:
        messages, issues = parse_messages(frame.body, trusted=True)
        result = sml_readings(messages, received_ts=int(NOW))
        assert not issues and not result.issues
        values = dict(zip(result.batch.obis.tolist(), result.batch.value.tolist(), strict=True))
        assert result.meter == sim.meter.meter_id
        assert values["1-0:1.8.0"] == imp and values["1-0:2.8.0"] == exp
        assert values["1-0:16.7.0"] == pytest.approx(sim.meter.power_w(int(NOW)), abs=0.01)
    assert (
        sim.meter.meter_id
        == {"ehz": "1 EMH00 10000003", "itron": "1 ITR00 10000003", "easymeter": "1 ESY11 10000003"}[profile]
    )


async def test_injected_faults_are_counted_and_the_stream_resyncs() -> None:
    faults = ["bit_error", "garbage", "truncate"]
    sim = SmlSimulator(seed=11, interval_s=FAST, faults=faults, fault_rate=0.5, clock=lambda: NOW)
    async with sim:
        data = await _read_tcp(sim, 60)
    frames, dec = _decode(data)
    injected = sim.meter.faults_injected
    assert set(injected) == set(faults)
    clean = sim.meter.pushes - sum(injected.values())
    # every clean push and every push with garbage in front decodes; bit errors and truncations are bad frames
    # (a truncated file is reported when the next start arrives; a flipped bit may also hit noise-free padding)
    assert len(frames) >= clean + injected["garbage"] - 1
    assert dec.faults >= injected["truncate"] - 1
    assert dec.faults + len(frames) >= sim.meter.pushes - 2
    assert dec.skipped > 0
    for frame in frames:
        assert (
            sml_readings(parse_messages(frame.body, trusted=True)[0], received_ts=int(NOW)).meter == "1 EMH00 10000000"
        )


async def test_pty_pushes_whether_or_not_anyone_reads() -> None:
    async with SmlSimulator("pty", profile="itron", interval_s=FAST, clock=lambda: NOW) as sim:
        assert sim.uri == f"sml+serial://{sim.pty_path}"
        await asyncio.sleep(0.05)  # nobody reads yet: the meter pushes anyway
        assert sim.pty_path is not None
        fd = os.open(sim.pty_path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        tty.setraw(fd)
        data = b""
        try:
            for _ in range(200):
                await asyncio.sleep(0.01)
                try:
                    data += os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if len(_decode(data)[0]) >= 3:
                    break
        finally:
            os.close(fd)
    frames, _ = _decode(data)
    assert len(frames) >= 3


def test_configuration_errors() -> None:
    with pytest.raises(ConfigError, match="profile"):
        SmlMeter("landis")
    with pytest.raises(ConfigError, match="fault"):
        SmlMeter(faults=["flood"])
    with pytest.raises(ConfigError, match="loopback"):
        SmlSimulator("tcp://10.0.0.1:5000")
    with pytest.raises(ConfigError, match="interval"):
        SmlSimulator(interval_s=(3.0, 1.0))
