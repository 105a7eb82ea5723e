"""The M-Bus master: the sans-I/O state machine (FCB, one request at a time, echoes skipped) and the asyncio
MbusMaster against the simulated segment over an in-memory link: primary and secondary reads, multi-telegram
readouts, the wildcard search with collisions, retries through faults."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from amiflow.errors import ProtocolError, ReadTimeout
from amiflow.uri import parse_meter_uri
from protocols.mbus import Ack, LongFrame, MasterState, MbusMaster, selection_frame
from protocols.mbus.client import mbus_target
from protocols.mbus.encoder import rsp_ud
from protocols.mbus.header import DeviceHeader
from protocols.transport import null_modem
from simulators.mbus_devices import SimSlave
from simulators.mbus_meter import MbusBusSimulator, collide

HEADER = DeviceHeader("12345678", "KAM", 1, 4)


def test_fcb_toggles_after_an_answer_and_repeats_on_retry() -> None:
    state = MasterState()
    assert state.snd_nke(5) == bytes.fromhex("1040054516")
    state.receive_data(b"\xe5")
    assert state.next_event() == Ack()
    first = state.req_ud2(5)
    assert first[1] == 0x7B  # FCB = 1 after SND_NKE
    state.timeout()  # lost answer: the retry carries the same FCB
    assert state.req_ud2(5) == first
    state.receive_data(first + rsp_ud(5, HEADER, b"").to_bytes())  # an adapter's local echo, then the answer
    assert isinstance(state.next_event(), LongFrame) and state.ignored == 1
    assert state.req_ud2(5)[1] == 0x5B  # toggled


def test_one_request_at_a_time() -> None:
    state = MasterState()
    state.req_ud2(1)
    with pytest.raises(ProtocolError):
        state.req_ud2(2)


def test_selection_frame_and_uris() -> None:
    frame = selection_frame("1234FFFF", "KAM", None, 4)
    assert frame.to_bytes().hex().startswith("680b0b6853fd52ffff3412") and frame.data[-2:] == b"\xff\x04"
    assert mbus_target(parse_meter_uri("mbus+tcp://127.0.0.1:1?secondary=12345678")) == "12345678"
    assert mbus_target(parse_meter_uri("mbus+serial:///dev/ttyUSB0?baud=2400&address=5")) == 5


def test_collisions_combine_like_the_wire() -> None:
    assert collide([b"\xe5", b"\xe5"]) == b"\xe5"
    assert collide([b"\x68\x03", b"\x68\x05\x05"]) == b"\x68\x01\x05"


@pytest.fixture
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[tuple[MbusMaster, MbusBusSimulator]]:
    kwargs = getattr(request, "param", {})
    sim = MbusBusSimulator(clock=lambda: 1_750_000_000, **kwargs)
    a, b = null_modem(timeout_s=0.1)
    async with a, b:
        task = asyncio.ensure_future(sim.serve_link(b))
        try:
            yield MbusMaster(a, timeout_s=0.05, retries=3), sim
        finally:
            task.cancel()


async def test_read_every_meter_by_primary_address(bus: tuple[MbusMaster, MbusBusSimulator]) -> None:
    master, _ = bus
    assert await master.scan_primary(range(0, 8)) == [1, 2, 3, 4]
    heat = await master.read(1)
    assert len(heat.telegrams) == 2 and heat.header is not None and heat.header.manufacturer == "KAM"
    assert [r.function for r in heat.records].count("maximum") == 2
    kinds = {}
    for address in (1, 2, 3, 4):
        readout = await master.read(address)
        assert readout.header is not None
        kinds[readout.header.medium_name] = set(readout.batch(1_750_000_000).obis)
    assert kinds["heat"] >= {"6-0:1.8.0", "6-0:2.8.0", "6-0:10.7.0", "6-0:11.7.0", "6-0:1.7.0"}
    assert kinds["water"] == {"8-0:1.8.0"} and kinds["gas"] >= {"7-0:3.8.0", "7-0:3.7.0"}
    assert kinds["electricity"] >= {"1-0:1.8.0", "1-0:2.8.0", "1-0:1.8.1", "1-0:32.7.0", "1-0:31.7.0"}


SEARCH = "heat:1:12000000,water:2:13000000,gas:3:50000000,electricity:4:51000000"


@pytest.mark.parametrize("bus", [{"devices": SEARCH}], indirect=True)
async def test_secondary_addressing_and_wildcard_search(bus: tuple[MbusMaster, MbusBusSimulator]) -> None:
    master, sim = bus
    idents = sorted(s.ident for s in sim.slaves)
    assert await master.scan_secondary() == idents  # 1F.. and 5F.. collide: the search descends there
    readout = await master.read(idents[2])
    assert readout.header is not None and readout.header.ident == idents[2]
    with pytest.raises(ReadTimeout):
        await master.read("99999999")


@pytest.mark.parametrize(
    "bus", [{"faults": ["timeout", "bad_checksum", "noise", "truncate"], "fault_rate": 0.3}], indirect=True
)
async def test_reads_survive_faults(bus: tuple[MbusMaster, MbusBusSimulator]) -> None:
    master, sim = bus
    master.retries = 6
    for _ in range(5):
        for address in (1, 2, 3, 4):
            readout = await master.read(address)
            assert readout.header is not None and readout.records
    assert sum(sim.faults_injected.values()) > 5


async def test_two_meters_on_one_address_collide() -> None:
    slaves = [SimSlave("water", 7, "11111111"), SimSlave("gas", 7, "22222222")]
    sim = MbusBusSimulator(devices=slaves)
    a, b = null_modem(timeout_s=0.1)
    async with a, b:
        task = asyncio.ensure_future(sim.serve_link(b))
        master = MbusMaster(a, timeout_s=0.1, retries=1)
        await master.snd_nke(7)  # two E5 are one E5
        with pytest.raises(ProtocolError):
            await master.req_ud2(7)  # two telegrams are garbage
        task.cancel()
