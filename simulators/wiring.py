"""Installation faults of a polled meter, for commissioning tests: what a wrongly wired or set-up meter shows.

A spec is a comma-separated list of ``kind=value`` items (``""`` or ``none``: a correctly installed meter)::

    reversed_ct=2,phase_order=132,voltage=195,frequency=51.2,pf=0.4,ct_ratio=200/5,vt_ratio=11000/110,relay=open

==================  ==============================================================================================
``reversed_ct=N``   phase N's CT is reversed: its active power (and power factor) runs backwards, its current angle
                    is turned by 180 degrees, and the total is the sum of what the phases measure
``phase_order=132`` L2 and L3 swapped: U(L2) at 240 and U(L3) at 120 degrees from U(L1) (``123`` is correct)
``voltage=V``       every phase at V volts (a weak or wrongly tapped supply)
``frequency=HZ``    the supply frequency (50 by default)
``pf=X``            the load's power factor (currents grow to P / (V x PF)); by default 0.97 is shown and the
                    currents are P / V, as before
``ct_ratio=P/S``    the CT ratio the meter holds (DLMS 1-0:0.4.2/0.4.5; maps with ``ct_primary``/``ct_secondary``)
``vt_ratio=P/S``    the VT ratio the meter holds (1-0:0.4.3/0.4.6; ``vt_primary``/``vt_secondary``)
``relay=open``      the supply relay is open (disconnected) from the start
``current=A``       every phase shows A amperes whatever the load (an overload, or current leads on the wrong CT)
``register=down``   the import energy register counts down (DLMS: a meter programmed for the wrong direction)
==================  ==============================================================================================

Pure: :func:`phase_supply` turns the load model's power and voltages into what each phase shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from amiflow.errors import ConfigError

__all__ = ["DEFAULT_PF", "PhaseSupply", "Wiring", "parse_wiring", "phase_supply"]

DEFAULT_PF = 0.97


@dataclass(frozen=True, slots=True)
class Wiring:
    """See the module docstring; the defaults are a correctly installed meter."""

    reversed_ct: int = 0
    phase_order: str = "123"
    voltage: float | None = None
    frequency: float = 50.0
    pf: float | None = None
    ct_ratio: tuple[float, float] | None = None
    vt_ratio: tuple[float, float] | None = None
    relay: str = "closed"
    current: float | None = None
    register: str = "up"

    @property
    def relay_open(self) -> bool:
        return self.relay == "open"


def _ratio(item: str, text: str) -> tuple[float, float]:
    num, _, den = text.partition("/")
    try:
        pair = (float(num), float(den or 1))
    except ValueError:
        raise ConfigError(f"wiring item {item!r}: expected PRIMARY/SECONDARY such as 200/5") from None
    if pair[0] <= 0 or pair[1] <= 0:
        raise ConfigError(f"wiring item {item!r}: both sides of a ratio must be positive")
    return pair


def parse_wiring(spec: str | Wiring | None) -> Wiring:
    """Parse a wiring spec (see the module docstring); ConfigError names a wrong item and the known kinds."""
    if isinstance(spec, Wiring):
        return spec
    text = (spec or "").strip()
    if text.lower() in ("", "none"):
        return Wiring()
    known = [f.name for f in fields(Wiring)]
    values: dict[str, object] = {}
    for raw in text.split(","):
        item = raw.strip()
        kind, sep, value = item.partition("=")
        if not sep or kind not in known:
            raise ConfigError(f"wiring item {item!r}: expected KIND=VALUE with KIND one of {', '.join(known)}")
        try:
            if kind == "reversed_ct":
                values[kind] = int(value)
            elif kind in ("voltage", "frequency", "pf", "current"):
                values[kind] = float(value)
            elif kind in ("ct_ratio", "vt_ratio"):
                values[kind] = _ratio(item, value)
            else:
                values[kind] = value
        except ValueError:
            raise ConfigError(f"wiring item {item!r}: {value!r} is not a number") from None
    wiring = Wiring(**values)  # type: ignore[arg-type]
    if wiring.reversed_ct not in (0, 1, 2, 3):
        raise ConfigError(f"wiring reversed_ct={wiring.reversed_ct}: a phase 1, 2 or 3")
    if wiring.phase_order not in ("123", "132"):
        raise ConfigError(f"wiring phase_order={wiring.phase_order}: 123 or 132")
    if wiring.pf is not None and not 0.0 < wiring.pf <= 1.0:
        raise ConfigError(f"wiring pf={wiring.pf:g}: between 0 and 1")
    if wiring.relay not in ("closed", "open"):
        raise ConfigError(f"wiring relay={wiring.relay}: closed or open")
    if wiring.register not in ("up", "down"):
        raise ConfigError(f"wiring register={wiring.register}: up or down")
    return wiring


@dataclass(frozen=True, slots=True)
class PhaseSupply:
    """What each phase shows: voltage (V), current (A), active power (W, signed as measured), power factor (signed
    with the power), voltage angle to U(L1) and current angle to its voltage (degrees), and the frequency."""

    volts: tuple[float, ...]
    amps: tuple[float, ...]
    watts: tuple[float, ...]
    pf: tuple[float, ...]
    voltage_angle: tuple[float, ...]
    current_angle: tuple[float, ...]
    frequency: float


def phase_supply(power_w: float, volts: list[float], wiring: Wiring) -> PhaseSupply:
    """Split ``power_w`` (the meter's true load, W) over ``len(volts)`` phases as ``wiring`` makes the meter see it."""
    n = len(volts)
    if wiring.reversed_ct > n:
        raise ConfigError(f"wiring reversed_ct={wiring.reversed_ct}: the meter has {n} phase(s)")
    shown = [wiring.voltage if wiring.voltage is not None else v for v in volts]
    pf = wiring.pf if wiring.pf is not None else DEFAULT_PF
    share = power_w / n
    amps = tuple(
        wiring.current if wiring.current is not None else abs(share) / v / (wiring.pf or 1.0) if v else 0.0
        for v in shown
    )
    sign = [-1.0 if wiring.reversed_ct == i + 1 else 1.0 for i in range(n)]
    watts = tuple(share * s for s in sign)
    angle = math.degrees(math.acos(pf))
    order = (0.0, 240.0, 120.0) if wiring.phase_order == "132" else (0.0, 120.0, 240.0)
    return PhaseSupply(
        volts=tuple(shown),
        amps=amps,
        watts=watts,
        pf=tuple(pf * s * (1.0 if share >= 0 else -1.0) for s in sign),
        voltage_angle=order[:n],
        current_angle=tuple((angle + (180.0 if s < 0 else 0.0)) % 360.0 for s in sign),
        frequency=wiring.frequency,
    )
