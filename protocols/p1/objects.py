"""The DSMR 2.2 .. 5.0.2 and e-MUCS (Fluvius) objects: what each OBIS code of a P1 telegram is, and its values.

Sources: P1 companion standard 5.0.2 (Netbeheer Nederland) clause 7 (the object list), DSMR 2.2/3.0 P1 clause 6,
e-MUCS P1 1.7.1 (Synergrid, Belgium) for ``0-0:96.1.4`` version, ``1-0:1.4.0`` current average demand,
``1-0:1.6.0`` maximum demand of the month and ``0-0:98.1.0`` the maximum demand of the last 13 months, and the
Luxembourg (Smarty), Swedish, Hungarian (E.ON) and EasyMeter Q3D dialects that reuse the same line format.

Value shapes::

    1-0:1.8.1(000004.426*kWh)                         a register or an instantaneous value: one reading
    0-n:24.2.1(170102161005W)(00000.107*m3)           M-Bus channel n (1..4): capture time, then the value
    0-n:24.3.0(161107190000)(00)(60)(1)(0-1:24.2.1)(m3)
    (00001.001)                                       DSMR 2.2/3.0 gas: capture time, ..., unit; value next line
    1-0:99.97.0(2)(0-0:96.7.19)(101208152415W)(0000000240*s)(...)(...)
                                                      power failure log: count, type, (end time)(duration)...
    1-0:1.6.0(200509134558S)(02.589*kW)               maximum demand this month: when, how much
    0-0:98.1.0(3)(1-0:1.6.0)(1-0:1.6.0)(month)(when)(value*kW)...
                                                      maximum demand history: count, 2 ids, 3 values a month

Numbers come out in base units (kWh -> Wh, kW -> W, kvarh -> varh, GJ -> Wh; m3, V, A, Hz and s unchanged).
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from amiflow.types import normalize_unit

from .clock import parse_timestamp

__all__ = [
    "DEVICE_TYPES",
    "DemandPeak",
    "Kind",
    "PowerFailure",
    "base_value",
    "classify",
    "demand_history",
    "hex_text",
    "power_failures",
]


class Kind(enum.Enum):
    """What a data object is, which decides how its values are read."""

    READING = "reading"  # a measured value with a unit, at the telegram's clock
    MBUS_READING = "mbus_reading"  # an M-Bus device's value with its own capture time
    OLD_GAS = "old_gas"  # DSMR 2.2/3.0 gas with the value on the next line
    MAX_DEMAND = "max_demand"  # (when)(value): the month's maximum demand
    DEMAND_HISTORY = "demand_history"  # the maximum demand of past months
    POWER_FAILURES = "power_failures"  # the power failure event log
    COUNTER = "counter"  # an event count (power failures, voltage sags and swells)
    TEXT = "text"  # a message, hex-encoded ASCII
    IDENTIFIER = "identifier"  # an equipment identifier or serial number
    CLOCK = "clock"
    VERSION = "version"
    STATE = "state"  # tariff indicator, breaker or valve position, device state
    SETTING = "setting"  # a configured threshold (limiter, fuse), not a measurement
    DEVICE_TYPE = "device_type"  # an M-Bus device's type (EN 13757-3)
    OTHER = "other"  # not in the table: a reading when it has one number with a known unit


_R, _C, _S = Kind.READING, Kind.COUNTER, Kind.STATE
# C.D.E -> (kind, name) for the meter itself (B = 0, A = 0 or 1, and 1-3:0.2.8)
_MAIN: dict[str, tuple[Kind, str]] = {
    "1.0.0": (Kind.CLOCK, "clock"),
    "0.2.8": (Kind.VERSION, "version"),
    "96.1.4": (Kind.VERSION, "emucs_version"),
    "96.1.1": (Kind.IDENTIFIER, "equipment_id"),
    "96.1.0": (Kind.IDENTIFIER, "serial_number"),
    "96.1.255": (Kind.IDENTIFIER, "serial_number"),
    "42.0.0": (Kind.IDENTIFIER, "logical_device_name"),
    "0.0.0": (Kind.IDENTIFIER, "device_address"),
    "96.14.0": (_S, "tariff"),
    "96.3.10": (_S, "breaker"),
    "96.5.5": (_S, "device_state"),
    "17.0.0": (Kind.SETTING, "limiter_threshold"),
    "31.4.0": (Kind.SETTING, "fuse_threshold_l1"),
    "51.4.0": (Kind.SETTING, "fuse_threshold_l2"),
    "71.4.0": (Kind.SETTING, "fuse_threshold_l3"),
    "96.7.21": (_C, "power_failures"),
    "96.7.9": (_C, "long_power_failures"),
    "99.97.0": (Kind.POWER_FAILURES, "power_failure_log"),
    "96.13.0": (Kind.TEXT, "message"),
    "96.13.1": (Kind.TEXT, "message_code"),
    **{f"96.13.{n}": (Kind.TEXT, f"message_{n}") for n in range(2, 6)},  # Luxembourg (Smarty) messages 2..5
    "1.4.0": (_R, "demand_average"),
    "1.6.0": (Kind.MAX_DEMAND, "demand_max_month"),
    "98.1.0": (Kind.DEMAND_HISTORY, "demand_max_history"),
    "1.7.0": (_R, "power_import"),
    "2.7.0": (_R, "power_export"),
    "3.7.0": (_R, "reactive_power_import"),
    "4.7.0": (_R, "reactive_power_export"),
    "9.7.0": (_R, "apparent_power_import"),
    "10.7.0": (_R, "apparent_power_export"),
    "13.7.0": (_R, "power_factor"),
    "14.7.0": (_R, "frequency"),
    "15.8.0": (_R, "energy_combined"),
}
for _n, (_phase, _base) in enumerate(((1, 20), (2, 40), (3, 60))):
    _v, _i = 32 + 20 * _n, 31 + 20 * _n
    _MAIN[f"{_v}.7.0"] = (_R, f"voltage_l{_phase}")
    _MAIN[f"{_i}.7.0"] = (_R, f"current_l{_phase}")
    _MAIN[f"{_v}.32.0"] = (_C, f"voltage_sags_l{_phase}")
    _MAIN[f"{_v}.36.0"] = (_C, f"voltage_swells_l{_phase}")
    _MAIN[f"{_v + 1}.7.0"] = (_R, f"power_factor_l{_phase}")
    for _d, _what in ((1, "power_import"), (2, "power_export"), (3, "reactive_power_import")):
        _MAIN[f"{_base + _d}.7.0"] = (_R, f"{_what}_l{_phase}")
    _MAIN[f"{_base + 4}.7.0"] = (_R, f"reactive_power_export_l{_phase}")
for _c, _what in ((1, "energy_import"), (2, "energy_export"), (3, "reactive_import"), (4, "reactive_export")):
    _MAIN[f"{_c}.8.0"] = (_R, _what)
    for _t in range(1, 5):
        _MAIN[f"{_c}.8.{_t}"] = (_R, f"{_what}_t{_t}")
for _q in range(1, 5):  # reactive energy and power per quadrant (E.ON Hungary)
    _MAIN[f"{_q + 4}.8.0"] = (_R, f"reactive_q{_q}")
    _MAIN[f"{_q + 4}.7.0"] = (_R, f"reactive_power_q{_q}")
# C.D.E -> (kind, name) for M-Bus channel B = 1..4 (gas, water, heat, a second electricity meter)
_MBUS: dict[str, tuple[Kind, str]] = {
    "24.1.0": (Kind.DEVICE_TYPE, "device_type"),
    "96.1.0": (Kind.IDENTIFIER, "equipment_id"),
    "96.1.1": (Kind.IDENTIFIER, "equipment_id"),
    "24.2.1": (Kind.MBUS_READING, "reading"),
    "24.2.3": (Kind.MBUS_READING, "reading_uncorrected"),  # e-MUCS gas: not temperature corrected
    "24.3.0": (Kind.OLD_GAS, "reading"),
    "24.4.0": (_S, "valve"),
    "96.3.10": (_S, "breaker"),
}
# EN 13757-3 table 6 device types as P1 telegrams write them (decimal)
DEVICE_TYPES: dict[int, str] = {2: "electricity", 3: "gas", 4: "heat", 6: "warm_water", 7: "water", 21: "hot_water"}
_OBIS_RE = re.compile(r"(\d{1,3})-(\d{1,3}):(\d{1,3}\.\d{1,3}\.\d{1,3})")
_NUMBER_RE = re.compile(r"([-+]?\d+(?:\.\d+)?)(?:\*([A-Za-z0-9]{1,8}))?")
_EXTRA_UNITS: dict[str, tuple[str, Decimal]] = {
    "m3": ("m3", Decimal(1)),
    "gj": ("Wh", Decimal(10**9) / Decimal(3600)),
    "mj": ("Wh", Decimal(10**6) / Decimal(3600)),
    "s": ("s", Decimal(1)),
}


@functools.lru_cache(maxsize=4096)
def classify(obis: str) -> tuple[Kind, str]:
    """The kind and name of a data object (``Kind.OTHER`` and ``""`` for codes not in the table)."""
    m = _OBIS_RE.fullmatch(obis)
    if m is None:
        return Kind.OTHER, ""
    a, b = int(m[1]), int(m[2])
    if a == 0 and 1 <= b <= 4:
        return _MBUS.get(m[3], (Kind.OTHER, ""))
    if (a, b, m[3]) == (1, 1, "31.4.0"):  # Luxembourg (Smarty): the current transformer ratio
        return Kind.SETTING, "ct_ratio"
    if b == 0 or (a, b) == (1, 3):
        return _MAIN.get(m[3], (Kind.OTHER, ""))
    return Kind.OTHER, ""


def base_value(text: str) -> tuple[float, str] | None:
    """``123.456*kWh`` -> (123456.0, "Wh"); ``0.98`` -> (0.98, ""); None when it is not a number with a known
    unit. Decimal scaling keeps it exact: 1.001 kWh is 1001 Wh, not 1000.99.."""
    m = _NUMBER_RE.fullmatch(text.strip())
    if m is None:
        return None
    unit = m[2] or ""
    extra = _EXTRA_UNITS.get(unit.lower())
    try:
        if extra is not None:
            return float(Decimal(m[1]) * extra[1]), extra[0]
        base, factor = normalize_unit(unit)
        return float(Decimal(m[1]) * Decimal(factor)), base
    except (ValueError, InvalidOperation):
        return None


def hex_text(raw: str) -> str:
    """Equipment ids and messages are hex-encoded ASCII (``4B38...`` -> ``K8...``); anything else stays as written."""
    if len(raw) % 2 or not re.fullmatch(r"[0-9A-Fa-f]*", raw):
        return raw
    text = bytes.fromhex(raw).decode("latin-1")
    return text.strip() if text.isprintable() and text.strip() else raw


@dataclass(frozen=True, slots=True)
class PowerFailure:
    """One entry of the power failure log: when the failure ended, and how long it lasted."""

    end_ts: int
    duration_s: int


@dataclass(frozen=True, slots=True)
class DemandPeak:
    """The maximum demand of one month (e-MUCS): the month's start, when the peak occurred, the peak in W."""

    month_ts: int
    at_ts: int
    demand_w: float


def _count(values: tuple[str, ...]) -> int:
    return int(values[0]) if values and values[0].isdigit() else 0


def power_failures(values: tuple[str, ...]) -> tuple[list[PowerFailure], str | None]:
    """The log's entries, and what was wrong with it (an entry count that the entries do not match, unreadable
    entries), or None. Empty forms seen in the field: ``(0)(0-0:96.7.19)``, ``(0)()`` and ``()``."""
    count, pairs = _count(values), values[2:]
    out: list[PowerFailure] = []
    for end, duration in zip(pairs[::2], pairs[1::2], strict=False):
        parsed = base_value(duration)
        try:
            if parsed is None or parsed[1] not in ("s", ""):
                raise ValueError(duration)
            out.append(PowerFailure(parse_timestamp(end), int(parsed[0])))
        except ValueError:
            continue
    if len(out) != count or len(pairs) != 2 * count:
        return out, f"says {count} entries, holds {len(pairs) // 2} ({len(out)} readable)"
    return out, None


def demand_history(values: tuple[str, ...]) -> tuple[list[DemandPeak], str | None]:
    """The months of ``0-0:98.1.0``, and what was wrong (unreadable months are skipped), or None. A month of 0 kW
    whose peak time is not a time is a month without a peak (Fluvius meters write ``632525252525W`` for the months
    before they were installed): skipped without complaint. Other layouts (E.ON Hungary's month-end registers under
    the same code) are not a history: no months, no complaint either."""
    if not values or not values[0].isdigit():
        return [], None
    count, months = _count(values), values[3:]
    out: list[DemandPeak] = []
    empty = 0
    for i in range(0, min(len(months), 3 * count) - 2, 3):
        parsed = base_value(months[i + 2])
        try:
            if parsed is None or parsed[1] != "W":
                raise ValueError(months[i + 2])
            out.append(DemandPeak(parse_timestamp(months[i]), parse_timestamp(months[i + 1]), parsed[0]))
        except ValueError:
            empty += parsed is not None and parsed[0] == 0
    if len(out) + empty != count:
        return out, f"says {count} months, {len(out)} readable"
    return out, None
