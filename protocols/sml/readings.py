"""SML messages -> :class:`~amiflow.types.ReadingBatch` rows (the shape the P1 decoder produces), sans-I/O.

Per SML file (BSI TR-03109-1 Anlage IV 6.1 SML_ListEntry, 6.6 SML_PeriodEntry):

- value = ``value * 10 ** scaler`` in the DLMS unit ``unit`` (30 Wh, 27 W, 35 V, 33 A, 44 Hz, 29 var, 32 varh,
  13 m3), scaled exactly (Decimal) and normalised to the base unit. Entries without a unit, with unit 255 (a
  count) or with a non-numeric value (manufacturer, ids, public keys, status words) are not readings, nor are
  quantities amiflow does not store (known DLMS units without a base unit: phase angles in deg, degC, VAh, s);
  a unit code outside the DLMS table gives an ``unsupported_unit`` issue;
- meter: the caller's ``meter``, else the value of 1-0:96.1.0 / 0-0:96.1.0, else the server id; an id in the
  DIN 43863-5 layout is written as on the nameplate (``1 EMH00 12345678``, :mod:`.server_id`), printable ASCII
  as text, anything else as lowercase hex;
- time: the entry's valTime when it is a real clock (timestamp / localTimestamp; secIndex is a seconds counter,
  not a time), else the list's actSensorTime / actGatewayTime, else the caller's ``received_ts``. amiflow has no
  quality flag for "receive time", so those rows carry quality 0 and :attr:`SmlFileReadings.clock` says
  ``received``. Profile rows (GetProfileList.Res) need a real valTime / actTime.

Issues (never raised): ``no_meter_id``, ``no_timestamp``, ``bad_obis``, ``unsupported_unit``.

Firmware quirk, opt-in (``dzg_unsigned_power``): some DZG DVS-74 firmware sends a positive power whose scaled
value does not fit 15 bits as a negative Integer16 (libsml-testing's ``DZG_DVS-7412.2_jmberg``: 356.24 W sent as
-299.12 W). The quirk reads a negative power (x.7.0) of a DZG meter as the unsigned value of the smallest width
that holds it; it is off by default because DZG generator meters send real negative power.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

import numpy as np

from amiflow.types import Issue, Obis, ReadingBatch, Source, normalize_unit
from protocols.dlms.cosem import UNITS

from .model import GetListRes, GetProfileListRes, PublicOpenRes, SmlMessage
from .server_id import format_server_id, parse_server_id
from .tlv import SmlValue, Typed

__all__ = ["SML_SOURCE", "SmlFileReadings", "id_text", "meter_id", "sml_readings", "unit_name"]

#: Source of SML rows.
SML_SOURCE: Final[Source] = Source.SML
_EXTRA_UNITS: Final = {13: "m3"}  # not in the DLMS table of protocols.dlms.cosem
_METER_ID_OBIS: Final = (bytes((1, 0, 96, 1, 0, 255)), bytes((0, 0, 96, 1, 0, 255)))
_POWER_C: Final = frozenset((1, 2, 15, 16, 21, 22, 36, 41, 42, 56, 61, 62, 76))


def unit_name(code: int) -> str:
    """The unit text of a DLMS unit code (30 -> ``Wh``), ``unit-N`` when unknown."""
    return _EXTRA_UNITS.get(code) or UNITS.get(code, f"unit-{code}")


def id_text(raw: bytes) -> str:
    """An id value as the meter shows it: DIN 43863-5 layout, printable ASCII as text, else lowercase hex."""
    if parse_server_id(raw) is not None:
        return format_server_id(raw)
    if raw and all(0x20 <= b < 0x7F for b in raw) and raw.strip():
        return raw.decode("ascii").strip()
    return raw.hex()


def meter_id(messages: Sequence[SmlMessage]) -> str | None:
    """The meter of a file, in this order: a DIN 43863-5 id in 96.1.0, a DIN id as server id, a printable 96.1.0,
    the server id in hex, a 96.1.0 in hex."""
    servers: list[bytes] = []
    values: list[bytes] = []
    for m in messages:
        body = m.body
        if isinstance(body, GetListRes):
            values += [e.value for e in body.entries if e.obj_name in _METER_ID_OBIS and isinstance(e.value, bytes)]
        if isinstance(body, GetListRes | PublicOpenRes | GetProfileListRes) and body.server_id:
            servers.append(body.server_id)
    values = [v for v in values if v]
    ranked = (
        [v for v in values if parse_server_id(v) is not None]
        + [s for s in servers if parse_server_id(s) is not None]
        + [v for v in values if id_text(v) != v.hex()]
        + servers
        + values
    )
    return id_text(ranked[0]) if ranked else None


@dataclass(frozen=True, slots=True)
class SmlFileReadings:
    """The readings of one file, its meter and where the timestamps came from (``meter``/``received``/None)."""

    batch: ReadingBatch
    issues: tuple[Issue, ...]
    meter: str | None
    clock: str | None


def _obis_text(raw: bytes) -> str:
    obis = Obis.from_bytes(raw)
    return str(obis) if obis.f == 255 else f"{obis}*{obis.f}"


def _dzg(value: int) -> int:
    width = max(1, ((~value).bit_length() + 8) // 8)  # smallest Integer width holding the negative value
    return value + (1 << (8 * width))


class _Rows:
    def __init__(self, meter: str, dzg_quirk: bool) -> None:
        self.meter, self.dzg_quirk = meter, dzg_quirk
        self.obis: list[str] = []
        self.ts: list[int] = []
        self.value: list[float] = []
        self.unit: list[str] = []
        self.issues: list[Issue] = []

    def add(self, name: bytes, unit: int | None, scaler: int | None, value: SmlValue | Typed, ts: int) -> None:
        if isinstance(value, Typed):
            value = value.value
        if unit is None or unit == 255 or not isinstance(value, int) or isinstance(value, bool):
            return
        if len(name) != 6:
            self.issues.append(Issue("bad_obis", f"objName {name.hex()} is not a 6-byte OBIS code", self.meter))
            return
        text = unit_name(unit)
        try:
            base, factor = ("m3", 1.0) if text == "m3" else normalize_unit(text)
        except ValueError:
            if text.startswith("unit-"):
                detail = f"{_obis_text(name)}: unit code {unit} is not a DLMS unit; value skipped"
                self.issues.append(Issue("unsupported_unit", detail, self.meter))
            return
        if self.dzg_quirk and value < 0 and name[2] in _POWER_C and name[3] == 7:
            value = _dzg(value)
        scaled = Decimal(value).scaleb(scaler or 0) * Decimal(repr(factor))
        self.obis.append(_obis_text(name))
        self.ts.append(ts)
        self.value.append(float(scaled))
        self.unit.append(base)

    def batch(self, source: Source) -> ReadingBatch:
        return ReadingBatch.from_columns(
            self.meter,
            np.array(self.obis, dtype=object),
            self.ts,
            self.value,
            unit=np.array(self.unit, dtype=object),
            source=source,
        )


def sml_readings(
    messages: Iterable[SmlMessage],
    *,
    meter: str | None = None,
    received_ts: int | None = None,
    source: Source = SML_SOURCE,
    dzg_unsigned_power: bool = False,
) -> SmlFileReadings:
    """The readings of one SML file's messages (see the module docstring for meter, time and units)."""
    msgs = list(messages)
    name = meter or meter_id(msgs)
    if name is None:
        has_values = any(isinstance(m.body, GetListRes | GetProfileListRes) for m in msgs)
        issue = Issue("no_meter_id", "no meter given, no 96.1.0 value and no server id in the SML file")
        return SmlFileReadings(ReadingBatch(), (issue,) if has_values else (), None, None)
    dzg = dzg_unsigned_power and _is_dzg(msgs)
    rows = _Rows(name, dzg)
    clocks: set[str] = set()
    missing = False
    for m in msgs:
        body = m.body
        if isinstance(body, GetListRes):
            list_ts = _first_time(body.act_sensor_time, body.act_gateway_time)
            for e in body.entries:
                ts = _first_time(e.val_time) or list_ts
                clock = "meter" if ts is not None else "received"
                ts = ts if ts is not None else received_ts
                if ts is None:
                    missing = missing or e.unit is not None
                    continue
                before = len(rows.ts)
                rows.add(e.obj_name, e.unit, e.scaler, e.value, ts)
                if len(rows.ts) > before:
                    clocks.add(clock)
        elif isinstance(body, GetProfileListRes):
            ts = _first_time(body.val_time, body.act_time)
            if ts is None:
                missing = missing or bool(body.periods)
                continue
            for p in body.periods:
                rows.add(p.obj_name, p.unit, p.scaler, p.value, ts)
            clocks.add("meter")
    if missing:
        rows.issues.append(Issue("no_timestamp", "values without a meter clock and no receive time given", name))
    file_clock = "received" if "received" in clocks else "meter" if clocks else None
    return SmlFileReadings(rows.batch(source), tuple(rows.issues), name, file_clock)


def _first_time(*times: object) -> int | None:
    for t in times:
        epoch = getattr(t, "epoch_s", None)
        if isinstance(epoch, int):
            return epoch
    return None


def _is_dzg(messages: Sequence[SmlMessage]) -> bool:
    for m in messages:
        server = getattr(m.body, "server_id", None)
        if isinstance(server, bytes) and b"DZG" in server[:6]:
            return True
    return False
