"""Device identity and the transport headers of EN 13757-3 clause 5 / EN 13757-7 (OMS TPL).

Long header (CI 72, 76; 12 bytes)::   ident(4, BCD LSB first) manufacturer(2) version medium access status config(2)
Short header (CI 7A; 4 bytes)::       access status config(2)           (identity from the wM-Bus link layer)
wM-Bus link address (8 bytes)::       manufacturer(2) ident(4) version medium

Manufacturer: three letters packed into 15 bits, ``(c1-64)*1024 + (c2-64)*32 + (c3-64)``, LSB first (IEC 62056-21
FLAG ids: KAM Kamstrup, LUG/LGB Landis+Gyr, EFE Engelmann, HYD Diehl/Hydrometer, SON Sontex, ACW/ITW Itron,
TCH Techem, ...). The config field (the signature of older wired meters) says the security mode in bits 8-12 (0
none, 5 AES-128-CBC with a dynamic IV, 7 AES-CBC with an ephemeral key) and the number of encrypted 16-byte blocks in
bits 4-7. The ident number's BCD digits are kept as text (``06855817``); a wildcard nibble F shows as ``F``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "MEDIA",
    "DeviceHeader",
    "decode_manufacturer",
    "encode_manufacturer",
    "ident_bytes",
    "medium_name",
    "parse_link_address",
    "parse_long_header",
    "parse_short_header",
]

MEDIA: Final = {
    0x00: "other",
    0x01: "oil",
    0x02: "electricity",
    0x03: "gas",
    0x04: "heat",
    0x05: "steam",
    0x06: "warm_water",
    0x07: "water",
    0x08: "heat_cost_allocator",
    0x09: "compressed_air",
    0x0A: "cooling_outlet",
    0x0B: "cooling_inlet",
    0x0C: "heat_inlet",
    0x0D: "heat_cooling",
    0x0E: "bus_system_component",
    0x0F: "unknown",
    0x15: "hot_water",
    0x16: "cold_water",
    0x17: "dual_water",
    0x18: "pressure",
    0x19: "ad_converter",
    0x1A: "smoke_detector",
    0x1B: "room_sensor",
    0x1C: "gas_detector",
    0x20: "breaker",
    0x21: "valve",
    0x25: "customer_unit",
    0x28: "waste_water",
    0x29: "garbage",
    0x31: "communication_controller",
    0x32: "repeater_unidirectional",
    0x33: "repeater_bidirectional",
    0x36: "radio_converter_system",
    0x37: "radio_converter_meter",
    0x38: "wired_adapter",
}


def medium_name(code: int) -> str:
    return MEDIA.get(code, f"reserved_{code:02x}")


def decode_manufacturer(raw: bytes) -> str:
    """Three letters from the 2-byte field (LSB first); ``@`` stands for a zero letter."""
    m = int.from_bytes(raw[:2], "little")
    return "".join(chr(((m >> shift) & 0x1F) + 64) for shift in (10, 5, 0))


def encode_manufacturer(code: str) -> bytes:
    letters = code.upper()
    if len(letters) != 3 or not all("@" <= c <= "Z" for c in letters):
        raise ValueError(f"manufacturer {code!r}: expected three letters A-Z")
    m = (ord(letters[0]) - 64) << 10 | (ord(letters[1]) - 64) << 5 | (ord(letters[2]) - 64)
    return m.to_bytes(2, "little")


def ident_bytes(ident: str) -> bytes:
    """The 4 bytes (LSB first) of an 8-digit ident number; ``F`` digits are wildcards in a selection."""
    if len(ident) != 8 or any(c not in "0123456789Ff" for c in ident):
        raise ValueError(f"ident number {ident!r}: expected 8 digits (F for a wildcard)")
    return bytes.fromhex(ident)[::-1]


@dataclass(frozen=True, slots=True)
class DeviceHeader:
    """Who sent the telegram and its transport state."""

    ident: str
    manufacturer: str
    version: int
    medium: int
    access: int = 0
    status: int = 0
    config: int = 0
    raw_address: bytes = field(default=b"", repr=False, compare=False)

    @property
    def medium_name(self) -> str:
        return medium_name(self.medium)

    @property
    def security_mode(self) -> int:
        return (self.config >> 8) & 0x1F

    @property
    def encrypted_blocks(self) -> int:
        return (self.config >> 4) & 0x0F

    @property
    def address(self) -> bytes:
        """The 8-byte link address manufacturer, ident, version, medium (the first half of the mode 5 IV)."""
        if self.raw_address:
            return self.raw_address
        return encode_manufacturer(self.manufacturer) + ident_bytes(self.ident) + bytes((self.version, self.medium))

    def to_dict(self) -> dict[str, Any]:
        """The ``device`` object of ``amiflow decode mbus``."""
        return {
            "id": self.ident,
            "manufacturer": self.manufacturer,
            "version": self.version,
            "medium": self.medium_name,
            "medium_code": self.medium,
            "access_number": self.access,
            "status": self.status,
        }


def _ident(raw: bytes) -> str:
    return raw[::-1].hex().upper()


def parse_long_header(raw: bytes, *, msb_first: bool = False) -> DeviceHeader:
    """The 12-byte header of CI 72 (76: multi-byte fields most significant byte first)."""
    if msb_first:
        ident, mfr, config = raw[0:4][::-1], raw[4:6][::-1], raw[10:12][::-1]
    else:
        ident, mfr, config = raw[0:4], raw[4:6], raw[10:12]
    address = bytes(mfr) + bytes(ident) + bytes(raw[6:8])
    cfg = int.from_bytes(config, "little")
    return DeviceHeader(_ident(ident), decode_manufacturer(mfr), raw[6], raw[7], raw[8], raw[9], cfg, address)


def parse_short_header(raw: bytes, link: DeviceHeader | None) -> DeviceHeader:
    """The 4-byte header of CI 7A with the identity of the link layer (``?`` when there is none: wired 7A)."""
    base = link or DeviceHeader("????????", "???", 0, 0x0F)
    cfg = int.from_bytes(raw[2:4], "little")
    return DeviceHeader(base.ident, base.manufacturer, base.version, base.medium, raw[0], raw[1], cfg, base.raw_address)


def parse_link_address(raw: bytes) -> DeviceHeader:
    """The wM-Bus link address M(2) A(6) = manufacturer, ident, version, medium."""
    return DeviceHeader(_ident(raw[2:6]), decode_manufacturer(raw[0:2]), raw[6], raw[7], raw_address=bytes(raw[:8]))
