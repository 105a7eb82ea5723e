"""What a meter states about itself for a commissioning sheet: every value with its unit and scaling, and its relay.

A :class:`Quantity` is one OBIS value in its base unit (``Wh``, ``W``, ``V``, ``A``, ``Hz``, ``deg``, ``""``) together
with what the meter said (the number after its own scaling, in its own unit) and where that scaling came from:

- DLMS: the register's scaler_unit (class 3 attribute 3), e.g. raw 2304 with scaler -1 and unit V is 230.4 V;
- Modbus: the register map's unit and scale (or the SunSpec scale-factor register the map names);
- IEC 62056-21: the unit written in the data line (``1-0:1.8.0(154452.750*kWh)``).

The readers here take a protocol client (or a readout) and return quantities; :mod:`ingest.meter_sessions` calls them.
:data:`SHEET_OBIS` lists the OBIS codes the sheet reads from a DLMS meter (absent objects are left out).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from amiflow.types import normalize_unit, parse_obis

__all__ = [
    "CT_RATIO_OBIS",
    "SHEET_OBIS",
    "VT_RATIO_OBIS",
    "Quantity",
    "RelayState",
    "base_unit",
    "dlms_quantities",
    "dlms_relay",
    "iec_quantities",
    "modbus_quantities",
    "modbus_relay",
]

#: (numerator, denominator) objects of the transformer ratios (IEC 62056-6-1, C=0 D=4)
CT_RATIO_OBIS = ("1-0:0.4.2", "1-0:0.4.5")
VT_RATIO_OBIS = ("1-0:0.4.3", "1-0:0.4.6")

#: the OBIS codes a commissioning reads from a DLMS meter: energy registers, per-phase V/A/W/PF, frequency, angles
SHEET_OBIS = (
    "1-0:1.8.0",
    "1-0:2.8.0",
    "1-0:3.8.0",
    "1-0:4.8.0",
    "1-0:1.7.0",
    "1-0:2.7.0",
    "1-0:13.7.0",
    "1-0:14.7.0",
    "1-0:32.7.0",
    "1-0:52.7.0",
    "1-0:72.7.0",
    "1-0:31.7.0",
    "1-0:51.7.0",
    "1-0:71.7.0",
    "1-0:21.7.0",
    "1-0:41.7.0",
    "1-0:61.7.0",
    "1-0:22.7.0",
    "1-0:42.7.0",
    "1-0:62.7.0",
    "1-0:33.7.0",
    "1-0:53.7.0",
    "1-0:73.7.0",
    "1-0:81.7.10",
    "1-0:81.7.20",
    "1-0:81.7.40",
    "1-0:81.7.51",
    "1-0:81.7.62",
)

# Modbus register names that the maps leave without OBIS (they are no stored readings) but the sheet shows.
# Eastron's "phase angle" is the angle of each phase's current against its voltage (the power factor angle).
_MODBUS_EXTRA_OBIS = {
    "l1_power_factor": "1-0:33.7.0",
    "l2_power_factor": "1-0:53.7.0",
    "l3_power_factor": "1-0:73.7.0",
    "power_factor": "1-0:13.7.0",
    "l1_phase_angle": "1-0:81.7.40",
    "l2_phase_angle": "1-0:81.7.51",
    "l3_phase_angle": "1-0:81.7.62",
    "phase_angle": "1-0:81.7.40",
    "PF": "1-0:13.7.0",
    "PFphA": "1-0:33.7.0",
    "PFphB": "1-0:53.7.0",
    "PFphC": "1-0:73.7.0",
    "ct_primary": CT_RATIO_OBIS[0],
    "ct_secondary": CT_RATIO_OBIS[1],
    "vt_primary": VT_RATIO_OBIS[0],
    "vt_secondary": VT_RATIO_OBIS[1],
}
_UNIT_ALIASES = {"°": "deg", "VAr": "var", "kVArh": "kvarh", "VArh": "varh", "Pct": "%", "degC": "degC"}


@dataclass(frozen=True, slots=True)
class Quantity:
    """One value: ``value`` in the base ``unit``; ``meter_value`` in ``meter_unit`` as the meter stated it, after the
    scaling that ``scaling`` describes."""

    obis: str
    value: float
    unit: str
    meter_value: float
    meter_unit: str
    scaling: str


@dataclass(frozen=True, slots=True)
class RelayState:
    """The supply relay read back: ``present`` False for a meter without one; ``closed`` True when supplying."""

    present: bool
    closed: bool | None = None
    state: str = ""
    detail: str = ""


def base_unit(unit: str) -> tuple[str, float]:
    """(base unit, factor) of a unit as a meter writes it; units amiflow has no base for stay as they are."""
    text = _UNIT_ALIASES.get(unit.strip(), unit.strip())
    if text == "%":
        return "", 0.01
    try:
        return normalize_unit(text)
    except ValueError:
        return text, 1.0


def _dar(value: Any) -> bool:
    from protocols.dlms.xdlms import DataAccessResult

    return isinstance(value, DataAccessResult)


async def dlms_quantities(client: Any, codes: tuple[str, ...] = SHEET_OBIS) -> list[Quantity]:
    """The register objects (class 3) of ``codes`` that the meter holds, and its transformer ratios (class 1 or 3)."""
    from protocols.dlms import ScalerUnit

    out: list[Quantity] = []
    for start in range(0, len(codes), 8):  # a GET-with-list of 16 attributes stays well inside one APDU
        chunk = codes[start : start + 8]
        values = await client.get_many([(3, parse_obis(c), a) for c in chunk for a in (2, 3)])
        for i, code in enumerate(chunk):
            raw, su = values[2 * i], values[2 * i + 1]
            if _dar(raw) or not isinstance(raw, int | float) or isinstance(raw, bool):
                continue
            scaler = ScalerUnit() if _dar(su) else ScalerUnit.from_value(su)
            stated = float(raw) / 10.0**-scaler.scaler if scaler.scaler < 0 else float(raw) * 10.0**scaler.scaler
            base, factor = base_unit(scaler.unit_text)
            number = int(raw) if isinstance(raw, int) else float(raw)
            scaling = f"raw {number} x 10^{scaler.scaler} {scaler.unit_text or '(no unit)'} (scaler_unit)"
            out.append(Quantity(code, stated * factor, base, stated, scaler.unit_text, scaling))
    ratios = CT_RATIO_OBIS + VT_RATIO_OBIS
    values = await client.get_many([(k, parse_obis(c), 2) for c in ratios for k in (1, 3)])
    for i, code in enumerate(ratios):
        for raw, kind in ((values[2 * i], "data"), (values[2 * i + 1], "register")):
            if not _dar(raw) and isinstance(raw, int | float) and not isinstance(raw, bool):
                out.append(Quantity(code, float(raw), "", float(raw), "", f"{kind} object, unscaled"))
                break
    return out


async def dlms_relay(client: Any) -> RelayState:
    """Disconnect control 0-0:96.3.10 (class 70): output_state, control_state, control_mode."""
    from amiflow.errors import ProtocolError
    from protocols.dlms import ControlState

    try:
        output, state, mode = await client.read_disconnect_state()
    except ProtocolError as exc:
        if "object-undefined" in str(exc).lower() or "object_undefined" in str(exc).lower():
            return RelayState(False, detail="the meter has no disconnect control object 0-0:96.3.10")
        raise
    name = ControlState(state).name.lower()
    detail = f"0-0:96.3.10 output_state {str(bool(output)).lower()}, control_state {name}, control_mode {mode}"
    return RelayState(True, bool(output), name, detail)


async def modbus_quantities(client: Any) -> list[Quantity]:
    """Every numeric register of the map that has an OBIS code (the map's or the sheet's own), in map units."""
    regmap = await client.register_map()
    values: dict[str, float] = await client.read_all()
    out: list[Quantity] = []
    seen: set[str] = set()
    for reg in regmap.registers:
        code = reg.obis or _MODBUS_EXTRA_OBIS.get(reg.name)
        value = values.get(reg.name)
        if code is None or value is None or code in seen:
            continue
        seen.add(code)
        base, factor = base_unit(reg.unit)
        if reg.scale_ref is not None:
            scaling = f"{reg.type} x 10^{values.get(reg.scale_ref, 0):g} ({reg.scale_ref}), {reg.unit or 'no unit'}"
        else:
            scaling = f"{reg.type} x {reg.scale:g}, {reg.unit or 'no unit'} (map {regmap.name})"
        meter_unit = "%" if reg.unit == "Pct" else _UNIT_ALIASES.get(reg.unit, reg.unit)
        out.append(Quantity(code, value * factor, base, value, meter_unit, scaling))
    return out


async def modbus_relay(client: Any) -> RelayState:
    """The relay register of maps that have one (``sdm630+breaker``); ``present`` False otherwise."""
    regmap = await client.register_map()
    relay = regmap.relay
    if relay is None:
        return RelayState(False, detail=f"register map {regmap.name} has no relay register")
    closed = bool(await client.read_relay())
    state = "connected" if closed else "disconnected"
    return RelayState(True, closed, state, f"holding register {relay.address} = {int(closed)} ({state})")


def iec_quantities(readout: Any) -> list[Quantity]:
    """The current values of a readout, with the units its data lines state (historic ``*NN`` values left out)."""
    from protocols.iec62056_21 import parse_readout

    written: dict[str, tuple[float, str]] = {}
    for dataset in parse_readout(readout.raw).datasets:
        if "*" in dataset.address or not dataset.values:
            continue
        try:
            code = str(parse_obis(dataset.address))
            written.setdefault(code, (float(dataset.values[0][0]), dataset.values[0][1]))
        except ValueError:
            continue
    out: list[Quantity] = []
    batch = readout.readings
    for code, value, unit in zip(batch.obis.tolist(), batch.value.tolist(), batch.unit.tolist(), strict=True):
        stated, meter_unit = written.get(str(code), (float(value), str(unit)))
        scaling = f"as written ({meter_unit or 'no unit'})"
        out.append(Quantity(str(code), float(value), str(unit), stated, meter_unit, scaling))
    return out
