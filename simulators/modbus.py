"""A Modbus energy meter on pymodbus: ``amiflow sim modbus --listen URI [--map sdm630|sdm120|sunspec] [--unit N]``.

``--listen tcp://127.0.0.1:PORT`` serves Modbus TCP (port 0 picks one; the port is printed), ``--listen pty``
serves Modbus RTU on a pseudo-terminal and prints the path a client opens (``modbus+rtu:///dev/pts/N``): the
pymodbus RTU server sits on one pty and an in-process bridge copies bytes to a second pty, the client's end.
``--listen rtu:///dev/ttyX`` serves RTU on an existing device (an RS-485 adapter, one end of a socat pty pair).

Values come from the shared load model (:class:`simulators.load.LoadModel`, ``meter_index`` and ``seed``):
the import/export energy registers are the model's cumulative registers at the time of the read (monotonic),
power is the current interval's mean, split over three phases, with voltages near 230 V and currents P/V.
Maps: ``sdm630`` and ``sdm120`` (input registers, float32; with ``+breaker`` a relay at holding 4096) and
``sunspec`` (the SunS marker at ``sunspec_base``, common model 1, meter model 203 with scale factors or 213 in
float32, end marker).

Faults (``--faults``, comma-separated ``kind=rate``, seeded): ``timeout`` (no answer), ``corrupt`` (a response
with a bad CRC on RTU or a garbled header on TCP), ``exception`` (exception response 4, device failure),
``truncate`` (the response cut short) and ``drift=SECONDS`` (the simulator's clock offset: the registers are
those of another time; Modbus meters have no clock register to show it). :class:`SerialFaults` is shared with
the IEC 62056-21 simulator.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from amiflow.errors import ConfigError
from amiflow.settings import Settings
from amiflow_app.command import Command
from protocols.modbus.maps import SUNSPEC_METER_MODELS, load_map, sunspec_model
from protocols.modbus.registers import Register, RegisterMap, encode_value
from simulators._listen import parse_listen as _parse_listen

__all__ = ["SIM_MODBUS", "ModbusSimulator", "PtyBridge", "SerialFaults", "parse_listen", "parse_sim_faults"]

_SLOT_S = 900


@dataclass(frozen=True, slots=True)
class SerialFaults:
    """Rates in [0, 1] per request, except ``drift`` (seconds of clock offset)."""

    timeout: float = 0.0
    corrupt: float = 0.0
    exception: float = 0.0
    truncate: float = 0.0
    drift: float = 0.0


def parse_sim_faults(spec: str | None) -> SerialFaults:
    """``timeout=0.1,corrupt=0.05,exception=0.1,truncate=0.05,drift=300`` (``none`` or empty: no faults)."""
    if not spec or spec.strip().lower() == "none":
        return SerialFaults()
    names = {f.name for f in fields(SerialFaults)}
    values: dict[str, float] = {}
    for item in spec.split(","):
        key, _, raw = item.strip().partition("=")
        if key not in names:
            raise ConfigError(f"--faults {spec!r}: unknown fault {key!r}; expected {', '.join(sorted(names))}")
        try:
            values[key] = float(raw)
        except ValueError:
            raise ConfigError(f"--faults {spec!r}: {key} needs a number, got {raw!r}") from None
        if key != "drift" and not 0.0 <= values[key] <= 1.0:
            raise ConfigError(f"--faults {spec!r}: {key} must be a rate between 0 and 1")
    return SerialFaults(**values)


def parse_listen(text: str) -> tuple[str, str, int]:
    """The simulator's ``--listen`` (see :func:`simulators._listen.parse_listen`)."""
    return _parse_listen(text, tcp_schemes=("modbus+tcp",), serial_schemes=("rtu", "modbus+rtu"))


class PtyBridge:
    """Two ptys joined back to back: a server opens ``server_path``, a client ``client_path``; bytes flow both
    ways through this process (a null-modem cable). ``tamper(data) -> data`` may change server-to-client bytes."""

    def __init__(self, tamper: Callable[[bytes], bytes] | None = None) -> None:
        self._tamper = tamper
        self._fds: list[int] = []
        self.server_path = self.client_path = ""
        self._master_s = self._master_c = -1

    def open(self) -> None:
        ms, ss = os.openpty()
        mc, sc = os.openpty()
        for fd in (ms, ss, mc, sc):
            tty.setraw(fd)
        self._fds = [ms, ss, mc, sc]
        self._master_s, self._master_c = ms, mc
        self.server_path, self.client_path = os.ttyname(ss), os.ttyname(sc)
        loop = asyncio.get_running_loop()
        os.set_blocking(ms, False)
        os.set_blocking(mc, False)
        loop.add_reader(ms, self._pump, ms, mc, True)
        loop.add_reader(mc, self._pump, mc, ms, False)

    def _pump(self, src: int, dst: int, from_server: bool) -> None:
        try:
            data = os.read(src, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # the other side closed its end; a client may reopen it
        if from_server and self._tamper is not None:
            data = self._tamper(data)
        if data:
            with contextlib.suppress(OSError):
                os.write(dst, data)

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for fd in (self._master_s, self._master_c):
            if fd >= 0:
                loop.remove_reader(fd)
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []
        self._master_s = self._master_c = -1


def _meter_values(model: Any, meter_index: int, now: float) -> dict[str, float]:
    """Engineering values of a meter at ``now`` from the load model (energy in Wh, power in W)."""
    ts = int(now)
    slot_end = (ts // _SLOT_S + 1) * _SLOT_S
    import_wh = float(model.register_wh(meter_index, ts))
    export_wh = float(model.export_register_wh(meter_index, ts))
    p_imp = float(model.interval_energy_wh(meter_index, slot_end)) * 3600.0 / _SLOT_S
    p_exp = float(model.export_energy_wh(meter_index, slot_end)) * 3600.0 / _SLOT_S
    power = p_imp - p_exp
    wobble = ((meter_index * 7919 + ts // 60) % 41 - 20) / 10.0  # +-2 V, changing each minute
    volts = [230.0 + wobble, 230.5 - wobble / 2, 229.5 + wobble / 3]
    amps = [abs(power) / 3.0 / v for v in volts]
    return {
        "import_wh": import_wh,
        "export_wh": export_wh,
        "power_w": power,
        "v1": volts[0],
        "v2": volts[1],
        "v3": volts[2],
        "a1": amps[0],
        "a2": amps[1],
        "a3": amps[2],
        "hz": 50.0,
        "pf": 0.97,
    }


class _FallbackLoad:
    """A flat 400 W load (used only if the shared load model is unavailable)."""

    def register_wh(self, m: int, ts: int) -> float:
        return float(1_000_000 + m * 10_000 + (ts - 946_684_800) // 9)

    def export_register_wh(self, m: int, ts: int) -> float:
        return 0.0

    def interval_energy_wh(self, m: int, ts_end: int) -> float:
        return 100.0

    def export_energy_wh(self, m: int, ts_end: int) -> float:
        return 0.0


def _load_model(seed: int) -> Any:
    try:
        from simulators.load import LoadModel
    except ImportError:  # pragma: no cover - the shared model ships with amiflow
        return _FallbackLoad()
    return LoadModel(seed)


_EASTRON_VALUES: dict[str, Callable[[dict[str, float]], float]] = {
    "l1_voltage": lambda v: v["v1"],
    "l2_voltage": lambda v: v["v2"],
    "l3_voltage": lambda v: v["v3"],
    "voltage": lambda v: v["v1"],
    "voltage_ln": lambda v: (v["v1"] + v["v2"] + v["v3"]) / 3,
    "l1_current": lambda v: v["a1"],
    "l2_current": lambda v: v["a2"],
    "l3_current": lambda v: v["a3"],
    "current": lambda v: v["a1"] * 3,
    "total_line_current": lambda v: v["a1"] + v["a2"] + v["a3"],
    "l1_power_active": lambda v: v["power_w"] / 3,
    "l2_power_active": lambda v: v["power_w"] / 3,
    "l3_power_active": lambda v: v["power_w"] / 3,
    "total_power_active": lambda v: v["power_w"],
    "power_active": lambda v: v["power_w"],
    "total_power_factor": lambda v: v["pf"],
    "power_factor": lambda v: v["pf"],
    "frequency": lambda v: v["hz"],
    "import_energy_active": lambda v: v["import_wh"] / 1000,
    "export_energy_active": lambda v: v["export_wh"] / 1000,
    "total_energy_active": lambda v: (v["import_wh"] + v["export_wh"]) / 1000,
    "l1_voltage_thd": lambda v: 1.5,
}
_SUNSPEC_VALUES: dict[str, Callable[[dict[str, float]], float]] = {
    "AphA": lambda v: v["a1"],
    "AphB": lambda v: v["a2"],
    "AphC": lambda v: v["a3"],
    "A": lambda v: v["a1"] + v["a2"] + v["a3"],
    "PhVphA": lambda v: v["v1"],
    "PhVphB": lambda v: v["v2"],
    "PhVphC": lambda v: v["v3"],
    "PhV": lambda v: (v["v1"] + v["v2"] + v["v3"]) / 3,
    "Hz": lambda v: v["hz"],
    "W": lambda v: v["power_w"],
    "WphA": lambda v: v["power_w"] / 3,
    "WphB": lambda v: v["power_w"] / 3,
    "WphC": lambda v: v["power_w"] / 3,
    "TotWhImp": lambda v: v["import_wh"],
    "TotWhExp": lambda v: v["export_wh"],
    "PF": lambda v: v["pf"] * 100,
}
# scale factors of the int16/acc32 model: A 0.01 A, V 0.1 V, Hz 0.01 Hz, W 1 W, Wh 1 Wh, PF 0.01 %
_SUNSPEC_SF = {"A_SF": -2, "V_SF": -1, "Hz_SF": -2, "W_SF": 0, "TotWh_SF": 0, "PF_SF": -2}


class ModbusSimulator:
    """One simulated Modbus meter; ``await sim.start()`` then ``sim.port`` (TCP) or ``sim.path`` (pty).

    ``clock`` (epoch seconds) is injectable so tests can move time; ``unit`` is the device id it answers.
    """

    def __init__(
        self,
        listen: str = "tcp://127.0.0.1:0",
        *,
        map_name: str = "sdm630",
        unit: int = 1,
        meter_index: int = 0,
        seed: int = 1,
        faults: SerialFaults | str | None = None,
        sunspec_base: int = 40000,
        sunspec_meter_model: int = 203,
        word_order: str = "big",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kind, self.host, self.port = parse_listen(listen)
        self.map_name = map_name
        self.unit = unit
        self.meter_index = meter_index
        self.faults = parse_sim_faults(faults) if isinstance(faults, str | None) else faults
        self.sunspec_base = sunspec_base
        self.sunspec_meter_model = sunspec_meter_model
        self.word_order = word_order
        self._clock = clock
        self._rng = random.Random(seed ^ 0x5EED)
        self._model = _load_model(seed)
        self._regmap, self._image = self._build_map()
        self._server: Any = None
        self._bridge: PtyBridge | None = None
        self.path = self.host if self.kind == "serial" else ""
        if self.kind == "serial":
            self.host = ""
        self.requests = 0
        self.injected: dict[str, int] = {"timeout": 0, "corrupt": 0, "exception": 0, "truncate": 0}
        self._pending: str | None = None
        self.relay_closed = True  # maps with a relay start connected

    # -- the register image -----------------------------------------------------------------------------------

    def _build_map(self) -> tuple[RegisterMap, dict[int, dict[int, int]]]:
        """The map served and its static words ((fc -> address -> word)) such as SunSpec markers and strings."""
        static: dict[int, dict[int, int]] = {3: {}, 4: {}}
        if self.map_name != "sunspec":
            regmap = load_map(self.map_name)
            relay = regmap.relay
            if relay is not None:
                static[3][relay.address] = 1  # closed: supply connected
            serial = next((r for r in regmap.registers if r.name == "serial_number"), None)
            if serial is not None:
                for i, w in enumerate(encode_value(serial, 10_000_000 + self.meter_index)):
                    static[3][serial.address + i] = w
            return regmap, static
        base = self.sunspec_base
        common = sunspec_model(1, base + 2)
        meter = sunspec_model(self.sunspec_meter_model, base + 2 + 68)
        length = max(r.address + r.count for r in meter.registers) - (base + 2 + 68) - 2
        static[3].update({base: 0x5375, base + 1: 0x6E53, base + 2: 1, base + 3: 66})
        static[3].update({base + 70: self.sunspec_meter_model, base + 71: length})
        end = base + 72 + length
        static[3].update({end: 0xFFFF, end + 1: 0})
        strings = {
            "Mn": "amiflow",
            "Md": f"SIM{self.sunspec_meter_model}",
            "Vr": "1.0.0",
            "SN": f"SN{10_000_000 + self.meter_index}",
            "Opt": "",
        }
        for reg in common.registers:
            if reg.name in strings:
                for i, w in enumerate(encode_value(reg, strings[reg.name])):
                    static[3][reg.address + i] = w
        static[3][base + 2 + 66] = self.unit
        regs = tuple(r for r in meter.registers if r.name not in ("ID", "L"))
        return RegisterMap(meter.name, regs, max_registers=125, even=False, max_gap=0, sunspec=True), static

    def _values_now(self) -> dict[str, float | None]:
        v = _meter_values(self._model, self.meter_index, self._clock() + self.faults.drift)
        table = _SUNSPEC_VALUES if self._regmap.sunspec else _EASTRON_VALUES
        out: dict[str, float | None] = {}
        for reg in self._regmap.registers:
            if reg.type == "sunssf":
                out[reg.name] = float(_SUNSPEC_SF.get(reg.name, 0)) if reg.name in _SUNSPEC_SF else None
            elif reg.name in table:
                out[reg.name] = table[reg.name](v)
            elif self._regmap.sunspec:
                out[reg.name] = None  # not implemented
        return out

    def _words(self, reg: Register, value: float | None) -> list[int]:
        if reg.scale_ref is not None and value is not None:
            value = value / 10.0 ** _SUNSPEC_SF.get(reg.scale_ref, 0)
        return encode_value(reg, value, word_order=self.word_order, sunspec=self._regmap.sunspec)

    def snapshot(self) -> dict[int, dict[int, int]]:
        """The full register image now (fc -> address -> word); what a read returns, faults aside."""
        image = {fc: dict(words) for fc, words in self._image.items()}
        values = self._values_now()
        for reg in self._regmap.registers:
            if reg.name in values and not reg.writable:
                for i, w in enumerate(self._words(reg, values[reg.name])):
                    image[reg.function_code][reg.address + i] = w
        return image

    def _blocks(self) -> dict[int, list[tuple[int, int]]]:
        """(start, count) ranges per function code: every register, and holes of at most ``max_gap`` filled
        (reads across them are legal, as on an Eastron); SunSpec serves its whole chain as one range."""
        spans: dict[int, list[tuple[int, int]]] = {3: [], 4: []}
        for reg in self._regmap.registers:
            spans[reg.function_code].append((reg.address, reg.end))
        for fc, words in self._image.items():
            spans[fc].extend((a, a + 1) for a in words)
        parts = self._regmap.parts or (self._regmap,)
        gap = 0 if self._regmap.sunspec else max(p.max_gap for p in parts)
        out: dict[int, list[tuple[int, int]]] = {}
        for fc, items in spans.items():
            merged: list[list[int]] = []
            for start, end in sorted(items):
                if merged and start - merged[-1][1] <= (2 if self._regmap.sunspec else gap):
                    merged[-1][1] = max(merged[-1][1], end)
                else:
                    merged.append([start, end])
            even = not self._regmap.sunspec and any(p.even for p in parts)
            out[fc] = [(a, b - a + ((b - a) % 2 if even else 0)) for a, b in merged]
        return out

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> Any:
        from pymodbus.constants import ExcCodes

        self.requests += 1
        self._pending = self._decide()
        if self._pending == "exception":
            self._pending = None
            self.injected["exception"] += 1
            return ExcCodes.DEVICE_FAILURE
        relay = self._regmap.relay
        if set_values is not None:
            if relay is None or not (relay.address <= address and address + count <= relay.end):
                return ExcCodes.ILLEGAL_ADDRESS
            if int(set_values[0]) not in (0, 1):
                return ExcCodes.ILLEGAL_VALUE
            self.relay_closed = bool(set_values[0])
            return None
        if self._breaks_limits(function_code, address, count):
            return ExcCodes.ILLEGAL_VALUE  # Eastron: even counts, at most 80 registers per request
        image = self.snapshot().get(function_code, {})
        for i in range(address - start_address, address - start_address + count):
            registers[i] = image.get(start_address + i, 0)
        if relay is not None and address <= relay.address < address + count:
            registers[relay.address - start_address] = int(self.relay_closed)
        return None

    def _breaks_limits(self, function_code: int, address: int, count: int) -> bool:
        """True when a read breaks the vendor limits of the part of the map it touches."""
        for part in self._regmap.parts or (self._regmap,):
            touched = any(
                r.function_code == function_code and r.address < address + count and address < r.end
                for r in part.registers
            )
            if touched and ((part.even and count % 2) or count > part.max_registers):
                return True
        return False

    def _decide(self) -> str | None:
        f = self.faults
        for kind, rate in (
            ("timeout", f.timeout),
            ("corrupt", f.corrupt),
            ("exception", f.exception),
            ("truncate", f.truncate),
        ):
            if rate and self._rng.random() < rate:
                return kind
        return None

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if not sending or self._pending is None:
            return data
        kind, self._pending = self._pending, None
        self.injected[kind] += 1
        if kind == "timeout":
            return b""
        if kind == "truncate":
            return data[: max(1, len(data) // 2)]
        if self.kind != "tcp":  # RTU: break the CRC
            return data[:-1] + bytes([data[-1] ^ 0xFF])
        if len(data) > 9:  # TCP has no CRC: break the PDU's byte count so the frame contradicts itself
            return data[:8] + bytes([(data[8] + 3) & 0xFF]) + data[9:]
        return data[:4] + b"\xff\xff" + data[6:]  # or its MBAP length

    def _device(self) -> Any:
        from pymodbus.simulator import DataType, SimData, SimDevice

        blocks = self._blocks()
        relay = self._regmap.relay

        def simdata(fc: int) -> list[Any]:
            items = []
            for start, count in blocks.get(fc, []):
                items.append(
                    SimData(
                        start,
                        count=count,
                        values=0,
                        datatype=DataType.REGISTERS,
                        readonly=not (relay is not None and fc == 3 and start <= relay.address < start + count),
                    )
                )
            return items

        holding, inputs = simdata(3), simdata(4)
        bits = [SimData(0, count=1, values=0, datatype=DataType.BITS)]
        return SimDevice(id=self.unit, simdata=(bits, bits, holding or bits, inputs or bits), action=self._action)

    # -- lifecycle --------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen (TCP) or create the pty pair (RTU) and serve in the background."""
        from pymodbus import FramerType
        from pymodbus.server import ModbusSerialServer, ModbusTcpServer

        device = self._device()
        if self.kind == "tcp":
            self._server = ModbusTcpServer(device, address=(self.host, self.port), trace_packet=self._trace_packet)
            await self._server.serve_forever(background=True)
            self.port = self._server.transport.sockets[0].getsockname()[1]
            return
        if self.kind == "pty":
            self._bridge = PtyBridge()
            self._bridge.open()
            self.path = self._bridge.client_path
        self._server = ModbusSerialServer(
            device,
            framer=FramerType.RTU,
            port=self._bridge.server_path if self._bridge is not None else self.path,
            baudrate=9600,
            trace_packet=self._trace_packet,
        )
        await self._server.serve_forever(background=True)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()
        if self._bridge is not None:
            self._bridge.close()
            self._bridge = None

    async def __aenter__(self) -> ModbusSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def pty_path(self) -> str:
        """The client's end of the pty (RTU over a pty; empty for TCP): the same as ``path``."""
        return self.path

    @property
    def now(self) -> float:
        """The simulated time (epoch seconds) the registers show, drift aside."""
        return float(self._clock())

    @now.setter
    def now(self, value: float) -> None:
        """Freeze the simulated clock at ``value`` (tests move it forward to see the energy registers grow)."""
        fixed = float(value)
        self._clock = lambda: fixed

    @property
    def uri(self) -> str:
        """The meter URI a client uses to reach this simulator."""
        params = f"unit={self.unit}&map={self.map_name}"
        if self.kind == "tcp":
            return f"modbus+tcp://{self.host}:{self.port}?{params}"
        return f"modbus+rtu://{self.path}?{params}"


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--listen",
        default="tcp://127.0.0.1:0",
        help="tcp://127.0.0.1:PORT (0 = pick one), pty (prints the path), or rtu:///dev/ttyX (an existing device)",
    )
    p.add_argument("--map", default="sdm630", help="sdm630, sdm120, sunspec, or with a relay: sdm630+breaker")
    p.add_argument("--unit", type=int, default=1, help="Modbus device id (default 1)")
    p.add_argument("--meter-index", type=int, default=0, help="which meter of the load model (default 0)")
    p.add_argument("--seed", type=int, default=1, help="load model seed (default 1)")
    p.add_argument("--faults", default="", help="timeout=R,corrupt=R,exception=R,truncate=R,drift=SECONDS")
    p.add_argument("--word-order", choices=("big", "little"), default="big", help="float32 word order")
    p.add_argument("--sunspec-base", type=int, default=40000, choices=(0, 40000, 50000))
    p.add_argument(
        "--sunspec-model",
        type=int,
        default=203,
        choices=SUNSPEC_METER_MODELS,
        help="SunSpec meter model: 201-204 int16/acc32 with scale factors, 211-214 float32 (default 203)",
    )


def _run(args: argparse.Namespace, settings: Settings) -> int:
    async def serve() -> None:
        sim = ModbusSimulator(
            args.listen,
            map_name=args.map,
            unit=args.unit,
            meter_index=args.meter_index,
            seed=args.seed,
            faults=args.faults,
            word_order=args.word_order,
            sunspec_base=args.sunspec_base,
            sunspec_meter_model=args.sunspec_model,
        )
        async with sim:
            where = f"port {sim.port}" if sim.kind == "tcp" else f"{sim.kind} {sim.path}"
            print(f"modbus simulator ({args.map}, unit {args.unit}) listening on {where}: {sim.uri}", flush=True)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


SIM_MODBUS = Command(
    help="serve a simulated Modbus energy meter (TCP or RTU on a pty)", add_arguments=_add_arguments, run=_run
)
