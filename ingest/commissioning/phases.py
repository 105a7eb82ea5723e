"""The OBIS codes of a polyphase supply (IEC 62056-6-1) and the per-phase picture a commissioning judges.

L1/L2/L3 use C = 32/52/72 for voltage, 31/51/71 current, 21/41/61 active power import (A+; signed on meters that
give one signed value per phase, as Eastron's), 22/42/62 export (A-), 33/53/73 power factor. Angles (C = 81):
``81.7.10`` U(L2) and ``81.7.20`` U(L3) against U(L1) (120 and 240 degrees for the sequence L1-L2-L3),
``81.7.40/51/62`` each current against its phase voltage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "CURRENT",
    "EXPORT_POWER",
    "FREQUENCY",
    "IMPORT_POWER",
    "I_ANGLE",
    "PHASES",
    "POWER_FACTOR",
    "QUANTITY_NAMES",
    "TOTAL_EXPORT",
    "TOTAL_IMPORT",
    "TOTAL_PF",
    "U_ANGLE",
    "VOLTAGE",
    "Phase",
    "phase_picture",
]

PHASES = ("L1", "L2", "L3")
VOLTAGE = ("1-0:32.7.0", "1-0:52.7.0", "1-0:72.7.0")
CURRENT = ("1-0:31.7.0", "1-0:51.7.0", "1-0:71.7.0")
IMPORT_POWER = ("1-0:21.7.0", "1-0:41.7.0", "1-0:61.7.0")
EXPORT_POWER = ("1-0:22.7.0", "1-0:42.7.0", "1-0:62.7.0")
POWER_FACTOR = ("1-0:33.7.0", "1-0:53.7.0", "1-0:73.7.0")
U_ANGLE = (None, "1-0:81.7.10", "1-0:81.7.20")
I_ANGLE = ("1-0:81.7.40", "1-0:81.7.51", "1-0:81.7.62")
FREQUENCY = "1-0:14.7.0"
TOTAL_PF = "1-0:13.7.0"
TOTAL_IMPORT = "1-0:1.7.0"
TOTAL_EXPORT = "1-0:2.7.0"

#: what the sheet calls each code it shows
QUANTITY_NAMES = {
    "1-0:1.8.0": "active energy import (+A)",
    "1-0:2.8.0": "active energy export (-A)",
    "1-0:3.8.0": "reactive energy import (+R)",
    "1-0:4.8.0": "reactive energy export (-R)",
    "1-0:1.7.0": "active power import",
    "1-0:2.7.0": "active power export",
    "1-0:3.7.0": "reactive power",
    "1-0:13.7.0": "power factor",
    "1-0:14.7.0": "frequency",
    "1-0:0.4.2": "CT ratio numerator",
    "1-0:0.4.5": "CT ratio denominator",
    "1-0:0.4.3": "VT ratio numerator",
    "1-0:0.4.6": "VT ratio denominator",
    **{code: f"voltage {p}" for p, code in zip(PHASES, VOLTAGE, strict=True)},
    **{code: f"current {p}" for p, code in zip(PHASES, CURRENT, strict=True)},
    **{code: f"active power {p} (import)" for p, code in zip(PHASES, IMPORT_POWER, strict=True)},
    **{code: f"active power {p} export" for p, code in zip(PHASES, EXPORT_POWER, strict=True)},
    **{code: f"power factor {p}" for p, code in zip(PHASES, POWER_FACTOR, strict=True)},
    "1-0:81.7.10": "angle U(L2) to U(L1)",
    "1-0:81.7.20": "angle U(L3) to U(L1)",
    **{code: f"angle I({p}) to U({p})" for p, code in zip(PHASES, I_ANGLE, strict=True)},
}


@dataclass(frozen=True, slots=True)
class Phase:
    """What the meter gives for one phase (None where it gives nothing); ``power_w`` is net: import minus export."""

    name: str
    voltage_v: float | None
    current_a: float | None
    power_w: float | None
    power_factor: float | None
    voltage_angle_deg: float | None
    current_angle_deg: float | None


def phase_picture(values: Mapping[str, float]) -> list[Phase]:
    """The phases the meter reports a voltage for (L1 alone on a single-phase meter; a single-phase meter's total
    power is its L1 power)."""
    out = []
    for i, name in enumerate(PHASES):
        if VOLTAGE[i] not in values:
            continue
        power = None
        if IMPORT_POWER[i] in values or EXPORT_POWER[i] in values:
            power = values.get(IMPORT_POWER[i], 0.0) - values.get(EXPORT_POWER[i], 0.0)
        angle_code = U_ANGLE[i]  # None for U(L1), the reference of the angles
        angle = values.get(angle_code) if angle_code else (0.0 if U_ANGLE[1] in values else None)
        out.append(
            Phase(
                name,
                values[VOLTAGE[i]],
                values.get(CURRENT[i]),
                power,
                values.get(POWER_FACTOR[i]),
                angle,
                values.get(I_ANGLE[i]),
            )
        )
    if len(out) == 1 and out[0].power_w is None and (TOTAL_IMPORT in values or TOTAL_EXPORT in values):
        p = out[0]
        total = values.get(TOTAL_IMPORT, 0.0) - values.get(TOTAL_EXPORT, 0.0)
        pf = p.power_factor if p.power_factor is not None else values.get(TOTAL_PF)
        out[0] = Phase(p.name, p.voltage_v, p.current_a, total, pf, p.voltage_angle_deg, p.current_angle_deg)
    return out
