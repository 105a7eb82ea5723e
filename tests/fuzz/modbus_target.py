"""Modbus replies under fuzz: :class:`protocols.modbus.ModbusMeterClient` reads its map (SunSpec chain walk, scale
factors, relay) from a stand-in for the pymodbus client that answers every read from a register image.

An input is a map choice (its first byte) and the register image as 5-byte records (function code u8, address
u16, word u16; big-endian). The seeds are the images the Modbus simulator serves; mutated, they give replies with
odd words, missing registers (a short answer), broken SunSpec markers, lengths and model ids. The framing below the
registers is pymodbus's own, not amiflow's.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass
from functools import cache
from typing import Any

from amiflow.errors import AmiflowError
from amiflow.uri import parse_meter_uri
from protocols.modbus import ModbusMeterClient

__all__ = ["check_modbus", "modbus_seeds"]

MAPS = ("sdm630", "sdm120", "sdm630+breaker", "sunspec")
_RECORD = struct.Struct(">BHH")


def _image_bytes(choice: int, image: dict[int, dict[int, int]]) -> bytes:
    records = [_RECORD.pack(fc, a, w) for fc, words in image.items() for a, w in sorted(words.items())]
    return bytes((choice,)) + b"".join(records)


def modbus_seeds() -> list[bytes]:
    from simulators.modbus_meter import ModbusMeter

    out = []
    for choice, name in enumerate(MAPS):
        meter = ModbusMeter(name, meter_index=choice)
        out.append(_image_bytes(choice, meter.snapshot(1_700_000_000.0)))
    return out


@dataclass
class _Reply:
    registers: list[int]

    def isError(self) -> bool:
        return False


class _ImageClient:
    """Answers FC3/FC4 reads from an image; a read that meets a missing register answers the words before it."""

    def __init__(self, image: dict[int, dict[int, int]]) -> None:
        self.image = image

    def _read(self, fc: int, address: int, count: int) -> _Reply:
        words = []
        table = self.image.get(fc, {})
        for a in range(address, address + count):
            if a not in table:
                break
            words.append(table[a])
        return _Reply(words)

    async def read_holding_registers(self, address: int, *, count: int, device_id: int) -> _Reply:
        return self._read(3, address, count)

    async def read_input_registers(self, address: int, *, count: int, device_id: int) -> _Reply:
        return self._read(4, address, count)

    def close(self) -> None:
        pass


def _image(data: bytes) -> dict[int, dict[int, int]]:
    image: dict[int, dict[int, int]] = {3: {}, 4: {}}
    for i in range(1, len(data) - _RECORD.size + 1, _RECORD.size):
        fc, address, word = _RECORD.unpack_from(data, i)
        image.setdefault(fc, {})[address] = word
    return image


async def _read(data: bytes) -> None:
    name = MAPS[data[0] % len(MAPS)] if data else "sdm630"
    client = ModbusMeterClient(parse_meter_uri(f"modbus+tcp://127.0.0.1:1502?unit=1&map={name}&meter=F1"))
    client._client = _ImageClient(_image(data))
    reads = (lambda: client.read_readings(1_700_000_000), client.read_all, client.read_relay)
    for read in reads:
        try:
            await read()
        except AmiflowError:
            if client._map is None:
                return  # no map: every other read fails the same way


@cache
def _loop() -> asyncio.AbstractEventLoop:
    return asyncio.new_event_loop()


def check_modbus(data: bytes) -> Any:
    """Every read of the client against the image in ``data``; amiflow's errors pass, anything else escapes."""
    return _loop().run_until_complete(_read(data))
