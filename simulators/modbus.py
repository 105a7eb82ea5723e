"""A Modbus energy meter served by pymodbus: TCP, RTU on a pty, or RTU on an existing serial device.

``listen="tcp://127.0.0.1:PORT"`` serves Modbus TCP (port 0 picks one; ``port`` tells which), ``listen="pty"``
serves Modbus RTU on a pseudo-terminal and gives the path a client opens (``modbus+rtu:///dev/pts/N``): the
pymodbus RTU server sits on one pty and a :class:`~simulators.pty_bridge.PtyBridge` copies bytes to a second pty,
the client's end. ``listen="rtu:///dev/ttyX"`` serves RTU on an existing device (an RS-485 adapter, one end of a
socat pty pair). The registers (maps, values from the load model) are :class:`simulators.modbus_meter.ModbusMeter`;
the command line is ``amiflow sim modbus``.

Faults (``faults``, comma-separated ``kind=rate``, seeded): ``timeout`` (no answer), ``corrupt`` (a response
with a bad CRC on RTU or a garbled header on TCP), ``exception`` (exception response 4, device failure),
``truncate`` (the response cut short), ``drift=SECONDS`` (the simulator's clock offset: the registers are
those of another time; Modbus meters have no clock register to show it) and ``delay=SECONDS`` (every answer that
late: a slow link). Installation faults (a reversed CT, swapped phases, low voltage, an open relay ...) are the
``wiring`` spec of :mod:`simulators.wiring`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from amiflow.errors import ConfigError
from simulators.listen import parse_listen as _parse_listen
from simulators.modbus_meter import ModbusMeter
from simulators.pty_bridge import PtyBridge
from simulators.wiring import Wiring

__all__ = ["ModbusSimulator", "SerialFaults", "parse_listen", "parse_sim_faults"]


@dataclass(frozen=True, slots=True)
class SerialFaults:
    """Rates in [0, 1] per request, except ``drift`` (seconds of clock offset) and ``delay`` (seconds per answer)."""

    timeout: float = 0.0
    corrupt: float = 0.0
    exception: float = 0.0
    truncate: float = 0.0
    drift: float = 0.0
    delay: float = 0.0


def parse_sim_faults(spec: str | None) -> SerialFaults:
    """``timeout=0.1,corrupt=0.05,exception=0.1,truncate=0.05,drift=300,delay=0.3`` (``none`` or empty: none)."""
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
        if key == "delay" and not 0.0 <= values[key] <= 60.0:
            raise ConfigError(f"--faults {spec!r}: delay must be between 0 and 60 s")
        if key not in ("drift", "delay") and not 0.0 <= values[key] <= 1.0:
            raise ConfigError(f"--faults {spec!r}: {key} must be a rate between 0 and 1")
    return SerialFaults(**values)


def parse_listen(text: str) -> tuple[str, str, int]:
    """The simulator's ``--listen`` (see :func:`simulators.listen.parse_listen`)."""
    return _parse_listen(text, tcp_schemes=("modbus+tcp",), serial_schemes=("rtu", "modbus+rtu"))


class ModbusSimulator:
    """One simulated Modbus meter; ``await sim.start()`` then ``sim.port`` (TCP) or ``sim.path`` (pty).

    ``clock`` (epoch seconds) is injectable so tests can move time; ``unit`` is the device id it answers;
    ``wiring`` the installation faults (:mod:`simulators.wiring`); ``sim.meter`` is its
    :class:`~simulators.modbus_meter.ModbusMeter` (the register image).
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
        wiring: Wiring | str | None = None,
    ) -> None:
        self.kind, self.host, self.port = parse_listen(listen)
        self.map_name = map_name
        self.unit = unit
        self.meter_index = meter_index
        self.faults = parse_sim_faults(faults) if isinstance(faults, str | None) else faults
        self.meter = ModbusMeter(
            map_name,
            unit=unit,
            meter_index=meter_index,
            seed=seed,
            sunspec_base=sunspec_base,
            sunspec_meter_model=sunspec_meter_model,
            word_order=word_order,
            wiring=wiring,
        )
        self._clock = clock
        self._rng = random.Random(seed ^ 0x5EED)
        self._server: Any = None
        self._bridge: PtyBridge | None = None
        self.path = self.host if self.kind == "serial" else ""
        if self.kind == "serial":
            self.host = ""
        self.requests = 0
        self.injected: dict[str, int] = {"timeout": 0, "corrupt": 0, "exception": 0, "truncate": 0}
        self._pending: str | None = None
        self.relay_closed = not self.meter.wiring.relay_open  # maps with a relay start connected

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
        if self.faults.delay:
            await asyncio.sleep(self.faults.delay)
        self._pending = self._decide()
        if self._pending == "exception":
            self._pending = None
            self.injected["exception"] += 1
            return ExcCodes.DEVICE_FAILURE
        relay = self.meter.regmap.relay
        if set_values is not None:
            if relay is None or not (relay.address <= address and address + count <= relay.end):
                return ExcCodes.ILLEGAL_ADDRESS
            if int(set_values[0]) not in (0, 1):
                return ExcCodes.ILLEGAL_VALUE
            self.relay_closed = bool(set_values[0])
            return None
        if self.meter.breaks_limits(function_code, address, count):
            return ExcCodes.ILLEGAL_VALUE  # Eastron: even counts, at most 80 registers per request
        image = self.snapshot().get(function_code, {})
        for i in range(address - start_address, address - start_address + count):
            registers[i] = image.get(start_address + i, 0)
        if relay is not None and address <= relay.address < address + count:
            registers[relay.address - start_address] = int(self.relay_closed)
        return None

    def snapshot(self) -> dict[int, dict[int, int]]:
        """The full register image now (fc -> address -> word); what a read returns, faults aside."""
        return self.meter.snapshot(self._clock() + self.faults.drift)

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

        blocks = self.meter.blocks()
        relay = self.meter.regmap.relay

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
