"""Modbus meters: register maps as data, the pure value/request layer and an async client on pymodbus.

- :mod:`protocols.modbus.registers`: value codecs (float32 either word order, int16/uint16/int32/uint32/acc32,
  SunSpec scale factors and not-implemented values) and request coalescing within vendor limits;
- :mod:`protocols.modbus.maps`: the Eastron and SunSpec CSVs in ``maps/``, OBIS tables, amiflow's own CSV format;
- :mod:`protocols.modbus.client`: :class:`ModbusMeterClient` (TCP, RTU, RTU over TCP), SunSpec chain walk, relay.
"""

from __future__ import annotations

from protocols.modbus.client import SUNS, SUNSPEC_BASES, ModbusMeterClient
from protocols.modbus.maps import MAP_NAMES, load_map, read_map_csv, sunspec_model
from protocols.modbus.registers import (
    Register,
    RegisterMap,
    Request,
    decode_block,
    decode_value,
    encode_value,
    plan_reads,
)

__all__ = [
    "MAP_NAMES",
    "SUNS",
    "SUNSPEC_BASES",
    "ModbusMeterClient",
    "Register",
    "RegisterMap",
    "Request",
    "decode_block",
    "decode_value",
    "encode_value",
    "load_map",
    "plan_reads",
    "read_map_csv",
    "sunspec_model",
]
