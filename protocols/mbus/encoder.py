"""Building telegrams: data records, the long header and RSP_UD frames (the slave side, for simulators and tests).

``encode_record(vib, value, field=...)`` writes ``DIF [DIFE...] VIB data``: the DIF/DIFEs from storage number,
tariff, subunit and function as :mod:`.records` reads them back, the data in the coding of the data field nibble
(integers, BCD, real, LVAR text). ``vib`` is the value information block as sent (``b"\\x04"`` energy in 10 Wh,
``b"\\xfd\\x48"`` voltage in 0.1 V, ...).
"""

from __future__ import annotations

import struct
from typing import Final

from .datafield import BCD_FIELDS, DATA_LENGTHS, encode_bcd, encode_int
from .header import DeviceHeader, encode_manufacturer, ident_bytes
from .link import C_RSP_UD, LongFrame
from .records import FUNCTIONS

__all__ = ["MORE_RECORDS", "encode_dib", "encode_long_header", "encode_record", "rsp_ud"]

MORE_RECORDS: Final = b"\x1f"  # DIF 1F: more records follow in the next telegram


def encode_dib(
    field: int, *, storage: int = 0, tariff: int = 0, subunit: int = 0, function: str = "instantaneous"
) -> bytes:
    """DIF and the DIFEs that carry ``storage`` (41 bits), ``tariff`` (20 bits) and ``subunit`` (10 bits)."""
    dif = (FUNCTIONS.index(function) << 4) | (field & 0x0F) | ((storage & 1) << 6)
    storage >>= 1
    difes = []
    while storage or tariff or subunit:
        difes.append((storage & 0x0F) | ((tariff & 0x03) << 4) | ((subunit & 1) << 6))
        storage, tariff, subunit = storage >> 4, tariff >> 2, subunit >> 1
    if len(difes) > 10:
        raise ValueError("storage, tariff or subunit too large for 10 DIFEs")
    out = bytearray((dif | (0x80 if difes else 0),))
    for i, dife in enumerate(difes):
        out.append(dife | (0x80 if i < len(difes) - 1 else 0))
    return bytes(out)


def encode_record(
    vib: bytes,
    value: int | float | str | bytes | None,
    *,
    field: int = 0x04,
    storage: int = 0,
    tariff: int = 0,
    subunit: int = 0,
    function: str = "instantaneous",
) -> bytes:
    """One data record; ``value`` an int for integer/BCD fields, a float for real (5), text for LVAR (D),
    bytes for a field given as sent (dates: :func:`~protocols.mbus.datafield.encode_datetime_f`)."""
    dib = encode_dib(field, storage=storage, tariff=tariff, subunit=subunit, function=function)
    return dib + bytes(vib) + _data(field, value)


def _data(field: int, value: int | float | str | bytes | None) -> bytes:
    if isinstance(value, bytes):
        if field != 0x0D and len(value) != DATA_LENGTHS.get(field, -1):
            raise ValueError(f"{len(value)} data bytes for data field {field:x}")
        return value if field != 0x0D else bytes((len(value),)) + value
    if field in (0x00, 0x08):
        return b""
    if field == 0x05:
        return struct.pack("<f", float(value or 0))
    if field == 0x0D:
        text = str(value or "").encode("latin-1")[::-1]
        return bytes((len(text),)) + text
    if field in BCD_FIELDS:
        return encode_bcd(int(value or 0), DATA_LENGTHS[field])
    return encode_int(int(value or 0), DATA_LENGTHS[field])


def encode_long_header(header: DeviceHeader) -> bytes:
    """The 12 bytes after CI 72."""
    return (
        ident_bytes(header.ident)
        + encode_manufacturer(header.manufacturer)
        + bytes((header.version, header.medium, header.access & 0xFF, header.status))
        + header.config.to_bytes(2, "little")
    )


def rsp_ud(address: int, header: DeviceHeader, records: bytes, *, c: int = C_RSP_UD) -> LongFrame:
    """An RSP_UD long frame with CI 72, the long header and ``records`` (end them with MORE_RECORDS for a
    multi-telegram readout)."""
    return LongFrame(c, address, 0x72, encode_long_header(header) + bytes(records))
