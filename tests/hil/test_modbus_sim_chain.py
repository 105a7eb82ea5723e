"""Modbus hardware-in-the-loop: ModbusMeterClient against the Modbus simulator over TCP and RTU on a pty,
each injected fault, the relay through the billing bridge's driver, and a plain pymodbus client in its own
process as an independent cross-check of the simulator's registers."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from amiflow.errors import ConfigError, ConnectError, ProtocolError, ReadTimeout, TransportError
from amiflow.uri import parse_meter_uri
from protocols.modbus import ModbusMeterClient
from simulators.load import LoadModel
from simulators.modbus import ModbusSimulator, parse_sim_faults

T0 = 1_767_225_600 + 12 * 3600  # 2026-01-01 12:00 UTC
SEED = 7


class Clock:
    """A settable simulated clock: the simulator's registers are those of ``now``."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _sim(listen: str = "tcp://127.0.0.1:0", clock: Callable[[], float] | None = None, **kw: Any) -> ModbusSimulator:
    return ModbusSimulator(listen, seed=SEED, meter_index=kw.pop("meter_index", 3), clock=clock or Clock(), **kw)


def _client(sim: ModbusSimulator, extra: str = "", timeout_s: float = 2.0) -> ModbusMeterClient:
    return ModbusMeterClient(parse_meter_uri(sim.uri + extra), timeout_s=timeout_s)


def _readings(batch: Any) -> dict[str, float]:
    return {str(o): float(v) for o, v in zip(batch.obis, batch.value, strict=True)}


def _check_plausible(got: dict[str, float], expected_wh: float) -> None:
    assert got["1-0:1.8.0"] == pytest.approx(expected_wh, rel=2e-7, abs=2.0)  # float32 kWh on Eastron
    assert 207.0 <= got["1-0:32.7.0"] <= 253.0  # nominal 230 V +-10 %
    assert got["1-0:14.7.0"] == pytest.approx(50.0, abs=0.5)


async def test_tcp_sdm630_identify_readings_and_monotonic_energy() -> None:
    clock = Clock()
    async with _sim(clock=clock, map_name="sdm630") as sim:
        assert sim.port > 0
        async with _client(sim) as c:
            ident = await c.identify()
            assert ident["manufacturer"] == "Eastron" and ident["model"] == "SDM630" and ident["serial"]
            before = c.requests
            batch = await c.read_readings(int(clock.now))
            assert c.requests - before <= 4  # coalesced: never one request per register
            got = _readings(batch)
            _check_plausible(got, float(LoadModel(SEED).register_wh(3, int(clock.now))))
            units = dict(zip(batch.obis, batch.unit, strict=True))
            assert units["1-0:1.8.0"] == "Wh" and units["1-0:1.7.0"] == "W" and units["1-0:31.7.0"] == "A"
            # power consistent with voltage and current: sum over phases of V*I equals |P| (unity-ish PF)
            s = sum(got[f"1-0:{v}.7.0"] * got[f"1-0:{i}.7.0"] for v, i in ((32, 31), (52, 51), (72, 71)))
            assert s == pytest.approx(abs(got["1-0:1.7.0"]), rel=0.02, abs=1.0)
            clock.now += 6 * 3600
            later = _readings(await c.read_readings(int(clock.now)))
            assert later["1-0:1.8.0"] >= got["1-0:1.8.0"]
            assert later["1-0:1.8.0"] == pytest.approx(float(LoadModel(SEED).register_wh(3, int(clock.now))), abs=2.0)
            every = await c.read_all()
            assert every["frequency"] == pytest.approx(50.0, abs=0.5) and "l1_voltage" in every


async def test_word_order_little_matches_only_when_the_client_is_told() -> None:
    async with _sim(map_name="sdm120", word_order="little") as sim:
        async with _client(sim, "&word_order=little") as c:
            right = _readings(await c.read_readings(T0))
        async with _client(sim) as c:
            wrong = _readings(await c.read_readings(T0))
    _check_plausible(right, float(LoadModel(SEED).register_wh(3, T0)))
    assert wrong.get("1-0:1.8.0") != pytest.approx(right["1-0:1.8.0"], rel=1e-3)


@pytest.mark.parametrize(("base", "model"), [(40000, 203), (0, 213), (50000, 203)])
async def test_tcp_sunspec_chain_walk_from_each_base(base: int, model: int) -> None:
    async with _sim(map_name="sunspec", sunspec_base=base, sunspec_meter_model=model) as sim, _client(sim) as c:
        chain = await c.sunspec_models()
        assert [m[0] for m in chain] == [1, model] and chain[0][1] == base + 2
        ident = await c.identify()
        assert ident["manufacturer"] == "amiflow" and ident["serial"].startswith("SN")
        got = _readings(await c.read_readings(T0))
    _check_plausible(got, float(LoadModel(SEED).register_wh(3, T0)))


async def test_rtu_on_a_pty_reads_the_same_values_as_tcp() -> None:
    async with _sim("pty", map_name="sdm120") as sim:
        assert sim.path.startswith("/dev/")
        assert sim.uri.startswith("modbus+rtu:///dev/")
        async with _client(sim) as c:
            ident = await c.identify()
            got = _readings(await c.read_readings(T0))
    assert ident["model"] == "SDM120"
    _check_plausible(got, float(LoadModel(SEED).register_wh(3, T0)))


async def test_relay_through_the_billing_bridge_driver() -> None:
    from billing_bridge import ModbusRelayDriver

    async with _sim(map_name="sdm630+breaker") as sim:
        async with _client(sim) as c:
            assert await c.read_relay() is True
            await c.write_relay(False)
            assert await c.read_relay() is False
        meter: Any = SimpleNamespace(name="m-relay", uri=sim.uri)
        driver = ModbusRelayDriver(timeout_s=2.0)
        assert await driver.command(meter, "reconnect", uuid.uuid4()) == "connected"
        assert await driver.read_state(meter) == "connected"
        assert await driver.command(meter, "disconnect", uuid.uuid4()) == "disconnected"
        async with _client(sim) as c:
            assert await c.read_relay() is False
            _readings(await c.read_readings(T0))  # the relay does not disturb the measurements


async def test_a_map_without_relay_refuses_relay_commands() -> None:
    async with _sim(map_name="sdm630") as sim, _client(sim) as c:
        with pytest.raises(ConfigError, match="no relay"):
            await c.write_relay(False)


async def test_connection_refused_is_one_line_naming_the_uri() -> None:
    async with _sim() as sim:
        uri = sim.uri
    with pytest.raises(ConnectError) as err:
        async with ModbusMeterClient(parse_meter_uri(uri), timeout_s=1.0):
            pass
    assert uri in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("link", ["tcp://127.0.0.1:0", "pty"])
@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("timeout", ReadTimeout),
        ("exception", ProtocolError),
        ("corrupt", (ReadTimeout, ProtocolError)),
        ("truncate", (ReadTimeout, ProtocolError)),
    ],
)
async def test_each_fault_becomes_a_translated_error_naming_the_uri(link: str, fault: str, expected: Any) -> None:
    async with _sim(link, map_name="sdm120", faults=f"{fault}=1") as sim:
        with pytest.raises(expected) as err:
            async with _client(sim, timeout_s=0.5) as c:
                await c.read_readings(T0)
        assert sim.injected[fault] >= 1
    assert sim.uri in str(err.value) and "\n" not in str(err.value)
    if fault == "exception":
        assert "exception 4" in str(err.value)


async def test_faults_at_a_rate_leave_good_answers_correct() -> None:
    """Half the requests fail; every answer that does arrive carries the right energy."""
    expected = float(LoadModel(SEED).register_wh(3, T0))
    ok = failed = 0
    async with _sim(map_name="sdm120", faults="timeout=0.2,exception=0.2,truncate=0.1") as sim:
        for _ in range(12):
            try:
                async with _client(sim, timeout_s=0.3) as c:
                    got = _readings(await c.read_readings(T0))
            except (ReadTimeout, ProtocolError):
                failed += 1
                continue
            ok += 1
            _check_plausible(got, expected)
    assert ok >= 1 and failed >= 1


_PEER = textwrap.dedent(
    """
    import asyncio, json, struct, sys
    from pymodbus import FramerType
    from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

    async def main(kind, where, unit):
        if kind == "tcp":
            host, port = where.rsplit(":", 1)
            client = AsyncModbusTcpClient(host, port=int(port), timeout=2, retries=1)
        else:
            client = AsyncModbusSerialClient(where, framer=FramerType.RTU, baudrate=9600, timeout=2, retries=1)
        await client.connect()
        out = {}
        for name, address in (("voltage", 0), ("import_kwh", 72), ("frequency", 70)):
            rr = await client.read_input_registers(address, count=2, device_id=unit)
            out[name] = struct.unpack(">f", struct.pack(">HH", *rr.registers))[0]
        odd = await client.read_input_registers(72, count=1, device_id=unit)
        out["odd_count_refused"] = odd.isError()
        client.close()
        print(json.dumps(out))

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


@pytest.mark.parametrize("link", ["tcp://127.0.0.1:0", "pty"])
async def test_plain_pymodbus_client_in_its_own_process_agrees(link: str, tmp_path: Any) -> None:
    import asyncio

    script = tmp_path / "peer.py"
    script.write_text(_PEER)
    async with _sim(link, map_name="sdm120", unit=5) as sim:
        where = f"127.0.0.1:{sim.port}" if sim.kind == "tcp" else sim.path
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            sim.kind,
            where,
            "5",
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        peer = json.loads(out.decode().strip().splitlines()[-1])
        async with _client(sim) as c:
            ours = await c.read_all()
    assert peer["odd_count_refused"] is True  # Eastron: odd register counts are refused
    assert peer["import_kwh"] == pytest.approx(ours["import_energy_active"], rel=1e-6)  # read_all: map units (kWh)
    assert peer["voltage"] == pytest.approx(ours["voltage"], rel=1e-6)
    assert peer["frequency"] == pytest.approx(50.0, abs=0.5)


async def test_settable_now_and_pty_path() -> None:
    async with _sim("pty", map_name="sdm120") as sim:
        assert sim.pty_path == sim.path and sim.pty_path.startswith("/dev/")
        sim.now = T0
        assert sim.now == T0
        async with _client(sim) as c:
            first = _readings(await c.read_readings(T0))["1-0:1.8.0"]
            sim.now = T0 + 86_400
            second = _readings(await c.read_readings(T0 + 86_400))["1-0:1.8.0"]
    model = LoadModel(SEED)
    assert second - first == pytest.approx(float(model.register_wh(3, T0 + 86_400) - model.register_wh(3, T0)), abs=4)
    assert second > first


@pytest.mark.parametrize("link", ["tcp://127.0.0.1:0", "pty"])
@pytest.mark.parametrize("fault", ["timeout", "exception", "corrupt", "truncate"])
async def test_the_same_connection_recovers_after_each_fault(link: str, fault: str) -> None:
    """RTU and most TCP faults leave the connection usable. A TCP frame that contradicts its own length makes
    pymodbus drop the connection: the client says so (TransportError) and a new connection reads again."""
    outcomes: list[bool] = []
    dropped = False
    async with _sim(link, map_name="sdm120", faults=f"{fault}=0.5") as sim:
        async with _client(sim, timeout_s=0.25) as c:
            for _ in range(8):
                try:
                    got = _readings(await c.read_readings(T0))
                except (ReadTimeout, ProtocolError):
                    outcomes.append(False)
                    continue
                except TransportError as exc:
                    assert sim.uri in str(exc) and link.startswith("tcp") and fault == "corrupt"
                    dropped = True
                    break
                _check_plausible(got, float(LoadModel(SEED).register_wh(3, T0)))
                outcomes.append(True)
        assert False in outcomes or dropped
        if dropped:
            sim.faults = parse_sim_faults(None)
            async with _client(sim) as fresh:
                _check_plausible(_readings(await fresh.read_readings(T0)), float(LoadModel(SEED).register_wh(3, T0)))
            return
    first_failure = outcomes.index(False)
    assert any(outcomes[first_failure:]), outcomes  # a good read after a fault, on the same connection


async def test_rtu_on_an_existing_serial_device_and_listen_forms() -> None:
    from simulators.modbus import parse_listen
    from simulators.pty_bridge import PtyBridge

    assert parse_listen("modbus+tcp://127.0.0.1:0?unit=1") == ("tcp", "127.0.0.1", 0)
    assert parse_listen("rtu:///dev/ttyUSB0") == ("serial", "/dev/ttyUSB0", 0)
    for bad in ("tcp://10.0.0.5:502", "rtu://ttyUSB0", "udp://127.0.0.1:1"):
        with pytest.raises(ConfigError):
            parse_listen(bad)
    cable = PtyBridge()  # a null-modem cable: the simulator opens one end, the client the other
    cable.open()
    try:
        async with _sim(f"rtu://{cable.server_path}", map_name="sdm630") as sim:
            assert sim.kind == "serial" and sim.path == cable.server_path
            uri = f"modbus+rtu://{cable.client_path}?unit=1&map=sdm630"
            async with ModbusMeterClient(parse_meter_uri(uri), timeout_s=2.0) as c:
                got = _readings(await c.read_readings(T0))
    finally:
        cable.close()
    _check_plausible(got, float(LoadModel(SEED).register_wh(3, T0)))
