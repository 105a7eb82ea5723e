"""Variable data records (EN 13757-3 clause 6): ``DIF [DIFE x 0-10] VIF [VIFE x 0-10] data``, sans-I/O.

DIF ``E S FF DDDD``: E (0x80) a DIFE follows, S (0x40) the lowest storage number bit, FF the function (00
instantaneous, 01 maximum, 10 minimum, 11 value during error state), DDDD the data field (:mod:`.datafield`).
DIFE ``E U TT SSSS``: U one subunit (device unit) bit, TT two tariff bits, SSSS four storage bits, each DIFE adding
the next higher bits. Special DIFs: ``0F`` manufacturer-specific data to the end, ``1F`` the same and more records
follow in the next telegram (multi-telegram readout), ``2F`` idle filler (skipped), ``7F`` global readout request
(master to slave, skipped), ``3F``-``6F`` reserved (stop). A plain-text VIF (``7C``/``FC``) is followed by a
length byte and the unit in ASCII (last character first) before its VIFEs, as libmbus reads it.

Bad data never raises: a record that cannot be read ends the block with an :class:`~amiflow.types.Issue`
(``truncated_record``, ``too_many_difes``, ``too_many_vifes``, ``reserved_dif``, ``reserved_lvar``), a value that
cannot be decoded (an invalid BCD digit, an impossible date) leaves the record with ``value`` None and a
``bad_value`` issue. ``msb_first`` reads mode 2 (CI 76/77) data fields, sent most significant byte first.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Any, Final

from amiflow.types import Issue

from .datafield import (
    BCD_FIELDS,
    DATA_LENGTHS,
    DataFieldError,
    decode_bcd,
    decode_date_g,
    decode_datetime_f,
    decode_datetime_i,
    decode_int,
    decode_lvar,
    decode_real,
    decode_time_j,
    lvar_length,
)
from .vif import ValueInfo, apply_vife, primary_vif
from .vif_ext import fb_vife, fd_vife

__all__ = ["FUNCTIONS", "DataRecord", "RecordBlock", "parse_records"]

FUNCTIONS: Final = ("instantaneous", "maximum", "minimum", "error")
MAX_EXTENSIONS: Final = 10
Value = float | int | str | None


@dataclass(frozen=True, slots=True)
class DataRecord:
    """One data record: its coordinates (storage, tariff, subunit, function), meaning and value in base units.

    ``value`` is a float for measured quantities, a string for dates (ISO 8601, the meter's local time), texts and
    identifiers (BCD digits kept with their leading zeros), hex text for manufacturer-specific bytes, None when
    the record carries no data or its data could not be decoded. ``raw`` is the record as sent.
    """

    dif: int
    difes: tuple[int, ...]
    vif: int
    vifes: tuple[int, ...]
    storage: int
    tariff: int
    subunit: int
    function: str
    quantity: str
    unit: str
    value: Value
    modifiers: tuple[str, ...] = ()
    raw: bytes = b""

    @property
    def data_field(self) -> int:
        return self.dif & 0x0F

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``amiflow decode mbus`` records."""
        return {
            "storage": self.storage,
            "tariff": self.tariff,
            "subunit": self.subunit,
            "function": self.function,
            "quantity": self.quantity,
            "unit": self.unit,
            "value": self.value,
            "modifiers": list(self.modifiers),
            "dib": bytes((self.dif, *self.difes)).hex(),
            "vib": bytes((self.vif, *self.vifes)).hex(),
        }


@dataclass(frozen=True, slots=True)
class RecordBlock:
    """The records of one telegram, what stopped them, and the manufacturer-specific tail (after DIF 0F/1F)."""

    records: tuple[DataRecord, ...]
    issues: tuple[Issue, ...]
    more_follows: bool = False
    manufacturer_data: bytes = b""


class _Stop(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.issue = Issue(code, detail)


def parse_records(data: bytes, *, msb_first: bool = False) -> RecordBlock:
    """Every record of a variable data block; never raises for bad data (see the module docstring)."""
    records: list[DataRecord] = []
    issues: list[Issue] = []
    pos, n = 0, len(data)
    while pos < n:
        dif = data[pos]
        if dif in (0x2F, 0x7F):
            pos += 1
            continue
        if dif in (0x0F, 0x1F):
            return RecordBlock(tuple(records), tuple(issues), dif == 0x1F, bytes(data[pos + 1 :]))
        if dif & 0x0F == 0x0F:
            issues.append(Issue("reserved_dif", f"reserved DIF {dif:02x} at byte {pos}; the rest is not read"))
            break
        try:
            record, pos, bad = _record(data, pos, msb_first)
        except _Stop as stop:
            issues.append(stop.issue)
            break
        records.append(record)
        if bad is not None:
            issues.append(bad)
    return RecordBlock(tuple(records), tuple(issues))


def _take(data: bytes, pos: int, count: int, what: str) -> bytes:
    if pos + count > len(data):
        raise _Stop("truncated_record", f"the block ends inside a record's {what} at byte {pos}")
    return data[pos : pos + count]


def _extensions(data: bytes, pos: int, what: str, more: bool) -> tuple[tuple[int, ...], int]:
    out: list[int] = []
    while more:
        if len(out) == MAX_EXTENSIONS:
            raise _Stop(f"too_many_{what}s", f"more than {MAX_EXTENSIONS} {what.upper()}s at byte {pos}")
        byte = _take(data, pos, 1, what)[0]
        out.append(byte)
        pos += 1
        more = bool(byte & 0x80)
    return tuple(out), pos


@functools.lru_cache(maxsize=4096)  # a meter sends the same few VIBs in every telegram
def _meaning(vif: int, vifes: tuple[int, ...], text_unit: str | None) -> ValueInfo:
    if vif in (0xFB, 0xFD) and vifes:
        info, rest = (fd_vife(vifes[0]) if vif == 0xFD else fb_vife(vifes[0])), vifes[1:]
    elif text_unit is not None:
        info, rest = ValueInfo("plain_text", text_unit), vifes
    elif vif & 0x7F == 0x7F:  # the DIF still says how the number is coded (libmbus and pyMeterBus read it so)
        return ValueInfo("manufacturer_specific", modifiers=tuple(f"manufacturer_vife_{v:02x}" for v in vifes))
    else:
        info, rest = primary_vif(vif), vifes
    for i, vife in enumerate(rest):
        info = apply_vife(info, vife)
        if vife & 0x7F == 0x7F:  # VIFE FF: the rest are manufacturer VIFEs (ABB, Saia, EMU: the phase L1-L3)
            extra = tuple(f"manufacturer_vife_{v:02x}" for v in rest[i + 1 :])
            return replace(info, modifiers=(*info.modifiers, *extra))
    return info


def _record(data: bytes, start: int, msb_first: bool) -> tuple[DataRecord, int, Issue | None]:
    dif = data[start]
    difes, pos = _extensions(data, start + 1, "dife", bool(dif & 0x80))
    vif = _take(data, pos, 1, "vif")[0]
    pos += 1
    text_unit = None
    if vif & 0x7F == 0x7C:
        length = _take(data, pos, 1, "plain-text VIF")[0]
        text_unit = bytes(reversed(_take(data, pos + 1, length, "plain-text VIF"))).decode("latin-1")
        pos += 1 + length
    vifes, pos = _extensions(data, pos, "vife", bool(vif & 0x80))
    field = dif & 0x0F
    lvar = None
    if field == 0x0D:
        lvar = _take(data, pos, 1, "LVAR")[0]
        try:
            length = lvar_length(lvar)
        except DataFieldError as exc:
            raise _Stop("reserved_lvar", f"{exc} at byte {pos}") from None
        pos += 1
    else:
        length = DATA_LENGTHS[field]
    raw_data = _take(data, pos, length, "data")
    pos += length
    info = _meaning(vif, vifes, text_unit)
    storage, tariff, subunit = (dif >> 6) & 1, 0, 0
    for i, dife in enumerate(difes):
        storage |= (dife & 0x0F) << (1 + 4 * i)
        tariff |= ((dife >> 4) & 0x03) << (2 * i)
        subunit |= ((dife >> 6) & 0x01) << i
    bad = None
    try:
        value = _value(info, field, lvar, raw_data[::-1] if msb_first and lvar is None else raw_data)
    except DataFieldError as exc:
        value, bad = None, Issue("bad_value", f"record at byte {start} ({info.quantity}): {exc}")
    record = DataRecord(
        dif, difes, vif, vifes, storage, tariff, subunit, FUNCTIONS[(dif >> 4) & 0x03], info.quantity, info.unit,
        value, info.modifiers, bytes(data[start:pos]),
    )  # fmt: skip
    return record, pos, bad


def _value(info: ValueInfo, field: int, lvar: int | None, raw: bytes) -> Value:
    if not raw:
        return None
    if info.kind == "raw":
        return raw[::-1].hex()
    if info.kind in ("date", "datetime") and lvar is None and field not in BCD_FIELDS:
        return _time_point(raw)
    if lvar is not None:
        number = decode_lvar(lvar, raw)
        if isinstance(number, str):
            return number
    elif field == 0x05:
        real = decode_real(raw)
        return info.scaled_real(real) if info.kind == "number" else str(real)
    else:
        number = decode_bcd(raw) if field in BCD_FIELDS else decode_int(raw)
    if info.kind == "text":
        return f"{number:0{2 * len(raw)}d}" if field in BCD_FIELDS and number >= 0 else str(number)
    if info.kind != "number":
        return str(number)
    return info.scaled(number)


def _time_point(raw: bytes) -> str | None:
    if not any(raw) or all(b == 0xFF for b in raw):
        return None  # meters send 0000 / FFFF for "no date yet"
    if len(raw) == 2:
        return decode_date_g(raw).isoformat()
    if len(raw) == 4:
        return decode_datetime_f(raw).isoformat()
    if len(raw) == 6:
        return decode_datetime_i(raw).isoformat()
    if len(raw) == 3:
        return decode_time_j(raw).isoformat()
    raise DataFieldError(f"a time point of {len(raw)} bytes has no type")
