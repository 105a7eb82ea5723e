"""The application layer of a telegram (EN 13757-3 clauses 5-7): the CI field, its header, then the data.

CI fields read here (slave to master)::

    72 / 76   variable data, long header (76: mode 2, multi-byte fields MSB first)
    7A        variable data, short header (identity from the wM-Bus link layer)
    78        variable data, no header (wM-Bus)
    73 / 77   fixed data structure: ident(4) access status medium-unit(2) counter1(4) counter2(4)
    70        application error: one byte (0 unspecified, 1 unimplemented CI, 2 buffer too long, 3 too many
              records, 4 premature end of record, 5 more than 10 DIFEs, 6 more than 10 VIFEs, 8 application busy,
              9 too many readouts)

Encrypted variable data (security mode 5 in the config field) is decrypted with the meter's key from a
:class:`~protocols.mbus.security.KeyRing`; without a key (or with a wrong one) the telegram keeps its header and
carries an ``encrypted`` / ``bad_key`` issue. Other modes are ``unsupported_security``, other CI fields
``unsupported_ci``; a header cut short is ``truncated_header``. Nothing here raises for bad data.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Final

from amiflow.types import Issue

from .datafield import DataFieldError, decode_bcd
from .header import DeviceHeader, parse_long_header, parse_short_header
from .records import DataRecord, RecordBlock, parse_records
from .security import KeyRing, decrypt_mode5

__all__ = ["APPLICATION_ERRORS", "Telegram", "parse_application"]

APPLICATION_ERRORS: Final = {
    0: "unspecified error",
    1: "unimplemented CI field",
    2: "buffer too long, truncated",
    3: "too many records",
    4: "premature end of record",
    5: "more than 10 DIFEs",
    6: "more than 10 VIFEs",
    7: "reserved",
    8: "application too busy",
    9: "too many readouts",
}
# fixed data structure units (EN 13757-3 table 12): the index of (base, factor) in 3s from code 2
_FIXED_UNITS: Final = (
    ("Wh", 1), ("Wh", 1e3), ("Wh", 1e6), ("J", 1e3), ("J", 1e6), ("J", 1e9), ("W", 1), ("W", 1e3), ("W", 1e6),
    ("J/h", 1e3), ("J/h", 1e6), ("J/h", 1e9), ("m3", 1e-6), ("m3", 1e-3), ("m3", 1), ("m3/h", 1e-6), ("m3/h", 1e-3),
    ("m3/h", 1),
)  # fmt: skip
_FIXED_QUANTITIES: Final = {"Wh": "energy", "J": "energy", "W": "power", "J/h": "power", "m3": "volume"}


@dataclass(frozen=True, slots=True)
class Telegram:
    """A decoded RSP_UD (or wM-Bus) application layer: header, records, and whether more telegrams follow."""

    ci: int
    header: DeviceHeader | None
    records: tuple[DataRecord, ...] = ()
    issues: tuple[Issue, ...] = ()
    more_follows: bool = False
    manufacturer_data: bytes = b""
    decrypted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ci": f"{self.ci:02x}"}
        if self.header is not None:
            out["device"] = self.header.to_dict()
        out["records"] = [r.to_dict() for r in self.records]
        out["more_follows"] = self.more_follows
        if self.manufacturer_data:
            out["manufacturer_data"] = self.manufacturer_data.hex()
        if self.decrypted:
            out["decrypted"] = True
        return out | self.extra


def parse_application(
    ci: int, data: bytes, *, link: DeviceHeader | None = None, keys: KeyRing | None = None
) -> Telegram:
    """Decode the user data after the CI field; ``link`` is the wM-Bus link-layer identity, if any.

    On a wired telegram (no ``link``) the config field of older meters is a free "signature": only mode 5 counts
    as security there, any other value is ignored; on a wireless one every non-zero mode counts.
    """
    if ci in (0x72, 0x76):
        if len(data) < 12:
            return _cut(ci, link, "long header (12 bytes)", len(data))
        header = parse_long_header(data[:12], msb_first=ci == 0x76)
        if link is None and header.security_mode not in (0, 5):
            header = replace(header, config=0)  # a legacy signature (libmbus ignores it too)
        return _variable(ci, header, data[12:], keys, ci == 0x76)
    if ci == 0x7A:
        if len(data) < 4:
            return _cut(ci, link, "short header (4 bytes)", len(data))
        return _variable(ci, parse_short_header(data[:4], link), data[4:], keys, False)
    if ci == 0x78:
        return _variable(ci, link, data, keys, False)
    if ci in (0x73, 0x77):
        return _fixed(ci, data)
    if ci == 0x70:
        code = data[0] if data else 0
        text = APPLICATION_ERRORS.get(code, f"error {code}")
        return Telegram(ci, link, issues=(Issue("application_error", f"the meter reports: {text}"),))
    return Telegram(ci, link, issues=(Issue("unsupported_ci", f"CI field {ci:02x} is not decoded"),))


def _cut(ci: int, link: DeviceHeader | None, what: str, got: int) -> Telegram:
    return Telegram(ci, link, issues=(Issue("truncated_header", f"CI {ci:02x}: {got} bytes, less than a {what}"),))


def _variable(ci: int, header: DeviceHeader | None, data: bytes, keys: KeyRing | None, msb: bool) -> Telegram:
    mode = header.security_mode if header is not None else 0
    decrypted = False
    if mode and header is not None:
        if mode != 5:
            issue = Issue("unsupported_security", f"security mode {mode} is not supported (only mode 5)")
            return Telegram(ci, header, issues=(issue,))
        key = keys.key_for(header) if keys is not None else None
        if key is None:
            issue = Issue("encrypted", f"meter {header.ident} sends AES (mode 5) data and no key is known for it")
            return Telegram(ci, header, issues=(issue,))
        if len(data) < 16:
            return Telegram(ci, header, issues=(Issue("truncated_header", "encrypted data shorter than a block"),))
        data = decrypt_mode5(key, header, data)
        if data[:2] != b"\x2f\x2f":
            issue = Issue("bad_key", f"the key of meter {header.ident} does not decrypt its telegram (no 2F 2F)")
            return Telegram(ci, header, issues=(issue,))
        decrypted = True
    block: RecordBlock = parse_records(data, msb_first=msb)
    return Telegram(
        ci, header, block.records, block.issues, block.more_follows, block.manufacturer_data, decrypted
    )  # fmt: skip


def _fixed(ci: int, data: bytes) -> Telegram:
    if len(data) < 16:
        return _cut(ci, None, "fixed data structure (16 bytes)", len(data))
    msb = ci == 0x77
    ident_raw = data[0:4][::-1] if msb else data[0:4]
    access, status = data[4], data[5]
    u1, u2 = data[6], data[7]
    medium = (u1 >> 6) | ((u2 >> 6) << 2)  # two bits in each unit byte
    header = DeviceHeader(ident_raw[::-1].hex().upper(), "???", 0, medium, access, status)
    records: list[DataRecord] = []
    issues: list[Issue] = []
    for i, (unit_code, raw) in enumerate(((u1 & 0x3F, data[8:12]), (u2 & 0x3F, data[12:16]))):
        raw = raw[::-1] if msb else raw
        try:
            count = int.from_bytes(raw, "little") if status & 0x80 else decode_bcd(raw)
        except DataFieldError as exc:
            issues.append(Issue("bad_value", f"fixed counter {i + 1}: {exc}"))
            continue
        records.append(_fixed_record(unit_code, count, storage=1 if status & 0x40 else 0, raw=raw))
    return Telegram(ci, header, tuple(records), tuple(issues))


def _fixed_record(unit_code: int, count: int, *, storage: int, raw: bytes) -> DataRecord:
    if 2 <= unit_code < 2 + 3 * len(_FIXED_UNITS):
        unit, factor = _FIXED_UNITS[(unit_code - 2) // 3]
        value = float(count) * factor * 10 ** ((unit_code - 2) % 3)
        quantity = _FIXED_QUANTITIES.get(unit, "volume_flow")
    else:
        unit, value, quantity = "", float(count), {0x3E: "same_but_historic", 0x39: "hca_units"}.get(unit_code, "count")
    return DataRecord(0, (), unit_code, (), storage, 0, 0, "instantaneous", quantity, unit, value, (), raw)
