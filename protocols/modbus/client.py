"""An async Modbus meter client on pymodbus (TCP, RTU on a serial line or pty, RTU over TCP).

``ModbusMeterClient(uri)`` reads a meter through its register map (``?map=`` or ``map_name``; without one the
client looks for a SunSpec chain and falls back to ``sdm630``). Every request goes through the bus lock of its
RS-485 bus or TCP gateway (one outstanding request per bus). pymodbus exceptions are translated here:
connection failures -> ConnectError/TransportError, no answer -> ReadTimeout, an exception response ->
ProtocolError naming the function, address and exception code.

URI parameters: ``unit`` (device id, default 1), ``map``, ``word_order=big|little`` (overrides the map),
``max_registers`` (per request, overrides the map), serial ``baud``/``parity``/``bytesize``/``stopbits``.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from typing import Any

import numpy as np

from amiflow.errors import ConfigError, ConnectError, ProtocolError, ReadTimeout, TransportError
from amiflow.types import ReadingBatch, Source
from amiflow.uri import MeterUri
from protocols.modbus.maps import SUNSPEC_METER_MODELS, load_map, sunspec_model
from protocols.modbus.registers import Register, RegisterMap, decode_block, encode_value
from protocols.transport import BusLock, serial_settings

__all__ = ["BUS", "SUNSPEC_BASES", "SUNS", "ModbusMeterClient"]

log = logging.getLogger(__name__)
BUS = BusLock()
SUNS = (0x5375, 0x6E53)  # "SunS"
SUNSPEC_BASES = (40000, 0, 50000)
_MAX_MODELS = 64
_EXCEPTIONS = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


class ModbusMeterClient:
    """``async with ModbusMeterClient(uri) as c: await c.read_readings(ts)``; constructing opens nothing."""

    def __init__(self, uri: MeterUri, *, map_name: str | None = None, timeout_s: float = 3.0) -> None:
        if uri.protocol != "modbus":
            raise ConfigError(f"meter URI {uri.text!r}: not a Modbus URI")
        self.uri = uri
        self.unit = uri.int_param("unit", 1)
        self.timeout_s = timeout_s
        self.map_name = map_name or uri.params.get("map") or None
        self._word_order = uri.params.get("word_order")
        self._max_registers = uri.int_param("max_registers", 0)
        self._client: Any = None
        self._map: RegisterMap | None = None
        self.requests = 0  # requests sent (for tests and benchmarks)

    # -- connection -------------------------------------------------------------------------------------------

    def _make_client(self) -> Any:
        from pymodbus import FramerType
        from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

        if self.uri.link == "serial":
            baud, bits, parity, stop = serial_settings(self.uri)
            return AsyncModbusSerialClient(
                self.uri.path or "",
                framer=FramerType.RTU,
                baudrate=baud,
                bytesize=bits,
                parity=parity,
                stopbits=int(stop),
                timeout=self.timeout_s,
                retries=0,
                reconnect_delay=0,
            )
        framer = FramerType.RTU if self.uri.scheme == "modbus+rtu+tcp" else FramerType.SOCKET
        return AsyncModbusTcpClient(
            self.uri.host or "",
            port=self.uri.port or 502,
            framer=framer,
            timeout=self.timeout_s,
            retries=0,
            reconnect_delay=0,
        )

    async def __aenter__(self) -> ModbusMeterClient:
        from pymodbus.exceptions import ModbusException

        self._client = self._make_client()
        try:
            ok = await asyncio.wait_for(self._client.connect(), self.timeout_s + 1)
        except (TimeoutError, OSError, ModbusException) as exc:
            self._client.close()
            raise ConnectError(f"{self.uri.text}: cannot connect: {exc}") from exc
        if not ok:
            self._client.close()
            raise ConnectError(f"{self.uri.text}: cannot connect")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- requests ---------------------------------------------------------------------------------------------

    async def read_registers(self, function_code: int, address: int, count: int) -> list[int]:
        """One read request (FC3 holding or FC4 input) under the bus lock; translated errors."""
        if self._client is None:
            raise TransportError(f"{self.uri.text}: client is not open (use async with)")
        method = {3: self._client.read_holding_registers, 4: self._client.read_input_registers}.get(function_code)
        if method is None:
            raise ConfigError(f"{self.uri.text}: function code {function_code} cannot read registers")
        response = await self._call(f"FC{function_code} {address}+{count}", method, address, count=count)
        words = list(response.registers)
        if len(words) < count:
            raise ProtocolError(f"{self.uri.text}: FC{function_code} {address}+{count} answered {len(words)} words")
        return words[:count]

    async def write_registers(self, address: int, words: list[int]) -> None:
        """Write holding registers (FC6 for one, FC16 for more) under the bus lock."""
        if self._client is None:
            raise TransportError(f"{self.uri.text}: client is not open (use async with)")
        if len(words) == 1:
            await self._call(f"FC6 {address}", self._client.write_register, address, words[0])
        else:
            await self._call(f"FC16 {address}+{len(words)}", self._client.write_registers, address, words)

    async def _call(self, what: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

        async with BUS.hold(self.uri):
            self.requests += 1
            try:
                response = await asyncio.wait_for(method(*args, device_id=self.unit, **kwargs), self.timeout_s + 1)
            except (TimeoutError, ModbusIOException) as exc:
                raise ReadTimeout(f"{self.uri.text}: no answer to {what} within {self.timeout_s:g} s") from exc
            except ConnectionException as exc:
                raise TransportError(f"{self.uri.text}: connection lost during {what}") from exc
            except ModbusException as exc:
                raise ProtocolError(f"{self.uri.text}: {what} failed: {exc}") from exc
        if response.isError():
            code = int(getattr(response, "exception_code", 0))
            name = _EXCEPTIONS.get(code, "unknown exception")
            raise ProtocolError(f"{self.uri.text}: {what} refused: exception {code} ({name})")
        return response

    # -- maps -------------------------------------------------------------------------------------------------

    async def register_map(self) -> RegisterMap:
        """The map in use: named, or discovered by walking the SunSpec chain."""
        if self._map is None:
            name = self.map_name
            if name == "sunspec" or name is None:
                found = await self._walk_sunspec()
                if found is None and name == "sunspec":
                    bases = ", ".join(map(str, SUNSPEC_BASES))
                    raise ProtocolError(f"{self.uri.text}: no SunSpec 'SunS' marker at {bases}")
                self._map = found or load_map("sdm630")
            else:
                self._map = load_map(name)
            if self._max_registers:
                self._map = _limit(self._map, self._max_registers)
        return self._map

    async def sunspec_models(self) -> list[tuple[int, int, int]]:
        """The chain as (model id, address of its ID register, length L); [] when the device has no SunS marker."""
        for base in SUNSPEC_BASES:
            try:
                marker = await self.read_registers(3, base, 2)
            except ProtocolError:
                continue  # illegal address: no chain here
            if tuple(marker) != SUNS:
                continue
            models: list[tuple[int, int, int]] = []
            addr = base + 2
            for _ in range(_MAX_MODELS):
                model_id, length = await self.read_registers(3, addr, 2)
                if model_id == 0xFFFF:
                    return models
                models.append((model_id, addr, length))
                addr += 2 + length
                if addr > 0xFFFF - 2:
                    break
            raise ProtocolError(f"{self.uri.text}: SunSpec chain from {base} has no end marker")
        return []

    async def _walk_sunspec(self) -> RegisterMap | None:
        models = await self.sunspec_models()
        if not models:
            return None
        parts = [sunspec_model(1, addr) for mid, addr, _ in models if mid == 1][:1]
        meters = [(mid, addr, length) for mid, addr, length in models if mid in SUNSPEC_METER_MODELS]
        if not meters:
            found = ", ".join(str(m[0]) for m in models)
            raise ProtocolError(f"{self.uri.text}: SunSpec chain has no meter model (found {found})")
        mid, addr, _length = meters[0]
        parts.append(sunspec_model(mid, addr))
        regs = tuple(r for p in parts for r in p.registers)
        identity = dict(parts[0].identity) if parts[0].identity else {}
        return RegisterMap(
            f"sunspec:{mid}",
            regs,
            max_registers=125,
            even=False,
            max_gap=125,  # the whole chain is readable (SunSpec): a read may span unused points and model headers
            sunspec=True,
            identity=identity,
        )

    # -- reading ----------------------------------------------------------------------------------------------

    async def _read_values(self, registers: tuple[Register, ...] | None = None) -> dict[str, float | str | None]:
        regmap = await self.register_map()
        regs = registers if registers is not None else regmap.registers
        blocks: dict[tuple[int, int], list[int]] = {}
        for req in regmap.plan(regs):
            blocks[(req.function_code, req.address)] = await self.read_registers(
                req.function_code, req.address, req.count
            )
        return decode_block(regmap, blocks, word_order=self._word_order)

    async def read_all(self) -> dict[str, float]:
        """Every numeric register of the map (in the map's units, scale factors applied); not-implemented values
        are left out."""
        values = await self._read_values()
        return {k: v for k, v in values.items() if isinstance(v, float)}

    async def identify(self) -> dict[str, Any]:
        """manufacturer, model, serial, firmware (where the map has them), plus the map name."""
        regmap = await self.register_map()
        names = set(regmap.identity.values())
        regs = tuple(r for r in regmap.registers if r.name in names)
        values = await self._read_values(regs) if regs else {}
        out: dict[str, Any] = {"map": regmap.name}
        if regmap.name.startswith(("sdm630", "sdm120")):
            out.update(manufacturer="Eastron", model=regmap.name.split("+")[0].upper())
        for key, reg_name in regmap.identity.items():
            v = values.get(reg_name)
            if isinstance(v, float):
                v = str(int(v)) if key == "serial" and v.is_integer() else f"{v:g}"
            if v not in (None, ""):
                out[key] = v
        return out

    async def read_readings(self, ts: int) -> ReadingBatch:
        """The OBIS-mapped registers as readings at ``ts`` (epoch seconds), base units, Source.MODBUS; the meter
        column holds the URI's ``meter`` parameter or the URI (pollers rename it)."""
        regmap = await self.register_map()
        regs = tuple(r for r in regmap.registers if r.obis)
        needed = {r.scale_ref for r in regs if r.scale_ref}
        regs = regs + tuple(r for r in regmap.registers if r.name in needed)
        values = await self._read_values(regs)
        obis, vals, units = [], [], []
        seen: set[str] = set()
        for r in regs:
            v = values.get(r.name)
            if r.obis and isinstance(v, float) and r.obis not in seen:
                seen.add(r.obis)
                obis.append(r.obis)
                vals.append(v * r.obis_factor)
                units.append(r.obis_unit)
        return ReadingBatch.from_columns(
            self.uri.params.get("meter") or self.uri.text,
            np.array(obis, dtype=object),
            np.full(len(obis), int(ts), dtype=np.int64),
            vals,
            unit=np.array(units, dtype=object),
            source=Source.MODBUS,
        )

    # -- relay ------------------------------------------------------------------------------------------------

    async def _relay(self) -> Register:
        regmap = await self.register_map()
        relay = regmap.relay
        if relay is None:
            raise ConfigError(f"{self.uri.text}: register map {regmap.name} has no relay (use e.g. sdm630+breaker)")
        return relay

    async def write_relay(self, closed: bool) -> None:
        """Close (True: supply connected) or open (False: disconnected) the relay of maps that have one."""
        relay = await self._relay()
        await self.write_registers(relay.address, encode_value(relay, 1 if closed else 0))

    async def read_relay(self) -> bool:
        """True when the relay is closed (supply connected)."""
        relay = await self._relay()
        words = await self.read_registers(relay.function_code, relay.address, relay.count)
        return bool(words[0])


def _limit(regmap: RegisterMap, max_registers: int) -> RegisterMap:
    return RegisterMap(
        regmap.name,
        regmap.registers,
        word_order=regmap.word_order,
        max_registers=max_registers,
        even=regmap.even,
        max_gap=regmap.max_gap,
        sunspec=regmap.sunspec,
        identity=regmap.identity,
        parts=tuple(_limit(p, max_registers) for p in regmap.parts),
    )
