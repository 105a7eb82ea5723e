"""Modbus register values and request planning: the pure layer under the pymodbus transport.

Layout facts (Modbus Application Protocol v1.1b3; Eastron SDM630/SDM120 protocol v2.0; SunSpec Information Model):

- a register is 16 bits; 32-bit values span two registers, high word first by default ("big") or low word first
  ("little": Eastron can be switched, many gateways swap);
- ``float32`` IEEE-754; ``int16``/``uint16``; ``int32``/``uint32``; ``acc32`` SunSpec accumulator (unsigned 32 bit);
  ``sunssf`` SunSpec scale factor (int16, value = raw * 10^sf); ``string`` two ASCII characters per register;
- SunSpec "not implemented": int16 0x8000, uint16 0xFFFF, acc32 0, int32 0x80000000, uint32 0xFFFFFFFF, sunssf
  0x8000; a NaN float32 is not implemented anywhere;
- a request reads at most 125 registers (the PDU limit); Eastron meters allow at most 80 and only even counts.

:func:`plan_reads` coalesces the registers of a map into as few requests as those limits allow.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from amiflow.errors import ConfigError, FrameError

__all__ = [
    "MAX_PDU_REGISTERS",
    "Register",
    "RegisterMap",
    "Request",
    "TYPE_WIDTH",
    "decode_block",
    "decode_value",
    "encode_value",
    "plan_reads",
]

MAX_PDU_REGISTERS = 125
TYPE_WIDTH: dict[str, int] = {
    "float32": 2,
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "acc32": 2,
    "sunssf": 1,
    "pad": 1,
    "enum16": 1,
    "bitfield16": 1,
    "bitfield32": 2,
    "string": 0,  # width from the map
}
_NOT_IMPLEMENTED = {"int16": 0x8000, "sunssf": 0x8000, "uint16": 0xFFFF, "enum16": 0xFFFF, "acc32": 0}
_NOT_IMPLEMENTED32 = {"int32": 0x80000000, "uint32": 0xFFFFFFFF, "bitfield32": 0xFFFFFFFF}


@dataclass(frozen=True, slots=True)
class Register:
    """One value of a map: ``function_code`` 3 (holding) or 4 (input), ``count`` registers from ``address``.

    ``scale`` multiplies the raw value; ``scale_ref`` names a SunSpec scale-factor register of the same map
    (value = raw * scale * 10^sf). ``obis`` is the OBIS code its reading is stored under (None: not a reading);
    ``obis_factor`` converts the map's unit to the OBIS channel's base unit (kWh -> Wh is 1000).
    """

    name: str
    address: int
    function_code: int
    type: str
    count: int
    unit: str = ""
    scale: float = 1.0
    scale_ref: str | None = None
    obis: str | None = None
    obis_unit: str = ""
    obis_factor: float = 1.0
    writable: bool = False
    description: str = ""

    @property
    def end(self) -> int:
        return self.address + self.count


@dataclass(frozen=True, slots=True)
class RegisterMap:
    """A meter's registers with its vendor limits; ``sunspec`` maps treat sentinel values as not implemented."""

    name: str
    registers: tuple[Register, ...]
    word_order: str = "big"
    max_registers: int = 80
    even: bool = True
    max_gap: int = 16
    sunspec: bool = False
    identity: Mapping[str, str] = field(default_factory=dict)  # identify() key -> register name
    parts: tuple[RegisterMap, ...] = ()  # a union of maps plans each part's requests within its own limits

    def __post_init__(self) -> None:
        if self.word_order not in ("big", "little"):
            raise ConfigError(f"register map {self.name}: word order must be big or little, not {self.word_order!r}")
        if not 2 <= self.max_registers <= MAX_PDU_REGISTERS:
            raise ConfigError(f"register map {self.name}: max_registers must be 2..{MAX_PDU_REGISTERS}")

    def by_name(self) -> dict[str, Register]:
        return {r.name: r for r in self.registers}

    def plan(self, registers: Iterable[Register] | None = None) -> list[Request]:
        """The requests that read ``registers`` (default: all), each part of a union within its own limits."""
        wanted = set(self.registers if registers is None else registers)
        if self.parts:
            return [req for part in self.parts for req in part.plan([r for r in part.registers if r in wanted])]
        regs = [r for r in self.registers if r in wanted]
        return plan_reads(regs, max_registers=self.max_registers, even=self.even, max_gap=self.max_gap)

    @property
    def relay(self) -> Register | None:
        """The writable relay register (1 = closed/connected, 0 = open), when the map has one."""
        return next((r for r in self.registers if r.name == "relay" and r.writable), None)


@dataclass(frozen=True, slots=True)
class Request:
    """One read: ``count`` registers from ``address`` with ``function_code``; ``registers`` it covers."""

    function_code: int
    address: int
    count: int
    registers: tuple[Register, ...]


def plan_reads(
    registers: Iterable[Register],
    *,
    max_registers: int = 80,
    even: bool = True,
    max_gap: int = 16,
) -> list[Request]:
    """Coalesce registers into few requests: per function code, by address, merging neighbours while the request
    stays within ``max_registers`` and skips at most ``max_gap`` unmapped registers; with ``even`` every request
    starts on an even address and reads an even count (Eastron answers odd counts with an exception)."""
    out: list[Request] = []
    by_fc: dict[int, list[Register]] = {}
    for r in registers:
        # with ``even`` a value at an odd address is read from the even address before it, rounded to even
        need = _even(r.end - (r.address - r.address % 2)) if even else r.count
        if need > max_registers:
            raise ConfigError(f"register {r.name}: {need} registers exceed the limit of {max_registers}")
        by_fc.setdefault(r.function_code, []).append(r)
    for fc, regs in sorted(by_fc.items()):
        regs.sort(key=lambda r: (r.address, r.count))
        group: list[Register] = []
        start = end = 0
        for r in regs:
            r_start = r.address - (r.address % 2 if even else 0)
            new_end = max(end, r.end)
            span = _even(new_end - start) if even else new_end - start
            if group and r.address - end <= max_gap and span <= max_registers:
                group.append(r)
                end = new_end
                continue
            if group:
                out.append(_request(fc, start, end, group, even))
            group, start, end = [r], r_start, r.end
        if group:
            out.append(_request(fc, start, end, group, even))
    return out


def _even(n: int) -> int:
    return n + (n % 2)


def _request(fc: int, start: int, end: int, group: list[Register], even: bool) -> Request:
    count = _even(end - start) if even else end - start
    return Request(fc, start, count, tuple(group))


def _words_to_int(words: Sequence[int], word_order: str) -> int:
    ws = list(words) if word_order == "big" else list(reversed(words))
    value = 0
    for w in ws:
        value = (value << 16) | (w & 0xFFFF)
    return value


def decode_value(
    reg: Register, words: Sequence[int], *, word_order: str = "big", sunspec: bool = False
) -> float | None:
    """The raw value of ``reg`` from its words (before scale factors); None when not implemented.

    Strings are not numbers: use :func:`decode_string`. Raises FrameError for a wrong number of words.
    """
    width = TYPE_WIDTH.get(reg.type)
    if width is None or width == 0:
        raise ConfigError(f"register {reg.name}: type {reg.type!r} is not numeric")
    if len(words) != width:
        raise FrameError(f"register {reg.name}: expected {width} words, got {len(words)}")
    raw = _words_to_int(words, word_order)
    if reg.type == "float32":
        f32 = np.frombuffer(raw.to_bytes(4, "big"), dtype=">f4")[0]
        if not np.isfinite(f32):
            return None  # NaN: not implemented; an infinity is no measurement either
        # the shortest decimal that is this float32 is what the meter means: 230.8, not 230.8000030517578
        return float(np.format_float_positional(f32, unique=True, trim="-"))
    if sunspec and (_NOT_IMPLEMENTED.get(reg.type) == raw or _NOT_IMPLEMENTED32.get(reg.type) == raw):
        return None
    if reg.type in ("int16", "sunssf"):
        return float(raw - 0x10000 if raw & 0x8000 else raw)
    if reg.type == "int32":
        return float(raw - 0x1_0000_0000 if raw & 0x8000_0000 else raw)
    return float(raw)


def decode_string(words: Sequence[int]) -> str:
    """Two ASCII characters per register, NUL/space padded."""
    data = b"".join((w & 0xFFFF).to_bytes(2, "big") for w in words)
    return data.split(b"\x00", 1)[0].decode("ascii", errors="replace").strip()


def encode_value(
    reg: Register, value: float | str | None, *, word_order: str = "big", sunspec: bool = False
) -> list[int]:
    """The words that hold ``value`` (the inverse of decode; None writes the not-implemented pattern)."""
    if reg.type == "string":
        data = str(value or "").encode("ascii")[: reg.count * 2].ljust(reg.count * 2, b"\x00")
        return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    width = TYPE_WIDTH.get(reg.type, 1)
    if value is None:
        if reg.type == "float32":
            raw = 0x7FC00000
        else:
            raw = _NOT_IMPLEMENTED.get(reg.type, _NOT_IMPLEMENTED32.get(reg.type, 0xFFFF if width == 1 else 0))
    elif reg.type == "float32":
        raw = int.from_bytes(struct.pack(">f", float(value)), "big")
    else:
        raw = round(float(value)) & (0xFFFF if width == 1 else 0xFFFF_FFFF)
    words = [(raw >> 16) & 0xFFFF, raw & 0xFFFF] if width == 2 else [raw & 0xFFFF]
    return words if word_order == "big" else list(reversed(words))


def decode_block(
    regmap: RegisterMap, blocks: Mapping[tuple[int, int], Sequence[int]], *, word_order: str | None = None
) -> dict[str, float | str | None]:
    """Values of every register found in ``blocks`` ((function_code, start address) -> words), SunSpec scale
    factors applied (a value whose scale factor is not implemented is None)."""
    order = word_order or regmap.word_order
    raw: dict[str, float | str | None] = {}
    for reg in regmap.registers:
        words = _slice(blocks, reg)
        if words is None:
            continue
        if reg.type == "string":
            raw[reg.name] = decode_string(words)
        elif reg.type != "pad":
            raw[reg.name] = decode_value(reg, words, word_order=order, sunspec=regmap.sunspec)
    out: dict[str, float | str | None] = {}
    for reg in regmap.registers:
        if reg.name not in raw:
            continue
        v = raw[reg.name]
        if isinstance(v, float):
            if reg.scale_ref is not None:
                sf = raw.get(reg.scale_ref)
                # SunSpec defines scale factors from -10 to 10; a meter sending another sends no usable value
                v = None if not isinstance(sf, float) or not -10 <= sf <= 10 else _apply_sf(v * reg.scale, int(sf))
            else:
                v = v * reg.scale
        out[reg.name] = v
    return out


def _apply_sf(value: float, sf: int) -> float:
    """``value * 10^sf``; a negative factor divides by the exact power of ten, so 2282 with -1 is 228.2 and not
    228.20000000000002 (multiplying by the inexact 0.1 would leave that noise in stored readings)."""
    return value / 10.0**-sf if sf < 0 else value * 10.0**sf


def _slice(blocks: Mapping[tuple[int, int], Sequence[int]], reg: Register) -> Sequence[int] | None:
    for (fc, start), words in blocks.items():
        if fc == reg.function_code and start <= reg.address and reg.end <= start + len(words):
            return words[reg.address - start : reg.end - start]
    return None
