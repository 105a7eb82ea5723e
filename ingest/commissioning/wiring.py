"""The wiring checks (pure): phase sequence, energy direction per phase, transformer ratios, and the relay.

- phase sequence: from the voltage angles U(L2), U(L3) against U(L1) (``81.7.10``/``81.7.20``): 120/240 degrees is
  L1-L2-L3, 240/120 is L1-L3-L2 (two phases swapped: motors run backwards); within 30 degrees;
- direction: a phase whose net active power runs against the others (one exports while the rest import) has its CT
  reversed or its current leads swapped; every phase exporting is a warning (generation on site, or every CT reversed);
- CT/VT ratio: the ratio the installation has (given) against the ratio the meter holds (``0.4.2/0.4.5``,
  ``0.4.3/0.4.6``); they must agree within 0.5 %;
- relay: the disconnect relay read back, against the state expected (closed by default); "n/a (no relay)" without one.
"""

from __future__ import annotations

from collections.abc import Mapping

from ingest.commissioning.limits import Limits
from ingest.commissioning.phases import U_ANGLE, Phase
from ingest.commissioning.report import Check
from ingest.commissioning.supply import IDLE_W
from ingest.meter_quantities import CT_RATIO_OBIS, VT_RATIO_OBIS, RelayState

__all__ = ["ANGLE_TOLERANCE_DEG", "direction_check", "phase_sequence_check", "ratio_check", "relay_check"]

ANGLE_TOLERANCE_DEG = 30.0
_SEQUENCE_LIMIT = f"L1-L2-L3: U(L2) at 120, U(L3) at 240 degrees (+/-{ANGLE_TOLERANCE_DEG:g})"


def _near(angle: float, target: float) -> bool:
    return abs((angle - target + 180.0) % 360.0 - 180.0) <= ANGLE_TOLERANCE_DEG


def phase_sequence_check(phases: list[Phase], values: Mapping[str, float]) -> Check:
    """L1-L2-L3 from the voltage angles; skipped (with the reason) where the meter gives none."""
    if len(phases) < 3:
        return Check("phase_sequence", "skip", "single-phase meter: no phase sequence", _SEQUENCE_LIMIT)
    u2, u3 = (values.get(code) for code in U_ANGLE[1:] if code)
    if u2 is None or u3 is None:
        only_currents = any(p.current_angle_deg is not None for p in phases)
        reason = "the meter gives no voltage angles (1-0:81.7.10/81.7.20)"
        if only_currents:  # Eastron's "phase angle" registers: the power factor angle of each phase
            reason += ", only each current's angle to its own voltage"
        return Check(
            "phase_sequence", "skip", f"{reason}: check the rotation with a phase-sequence tester", _SEQUENCE_LIMIT
        )
    text = f"U(L2) at {u2 % 360:.0f}, U(L3) at {u3 % 360:.0f} degrees"
    if _near(u2, 120.0) and _near(u3, 240.0):
        return Check("phase_sequence", "pass", f"L1-L2-L3 ({text})", _SEQUENCE_LIMIT)
    if _near(u2, 240.0) and _near(u3, 120.0):
        return Check("phase_sequence", "fail", f"L1-L3-L2 ({text}): swap two phases", _SEQUENCE_LIMIT)
    return Check(
        "phase_sequence", "fail", f"no valid sequence ({text}): check the voltage connections", _SEQUENCE_LIMIT
    )


def direction_check(phases: list[Phase]) -> Check:
    """Energy direction per phase: a phase exporting while the others import fails, naming the phase."""
    limit = f"every loaded phase (|P| >= {IDLE_W:g} W) imports"
    powers = [(p.name, p.power_w) for p in phases if p.power_w is not None]
    if not powers:
        return Check("direction", "skip", "the meter gives no per-phase active power", limit)
    loaded = [(n, w) for n, w in powers if abs(w) >= IDLE_W]
    if not loaded:
        return Check("direction", "skip", "no phase carries load: the direction cannot be seen", limit)
    exporting = [n for n, w in loaded if w < 0]
    importing = [n for n, w in loaded if w > 0]
    text = ", ".join(f"{n} {w:+.0f} W" for n, w in loaded)
    if exporting and importing:
        names = ", ".join(exporting)
        return Check(
            "direction",
            "fail",
            f"{names} export{'s' if len(exporting) == 1 else ''} while {', '.join(importing)} import ({text}):"
            f" reversed CT or swapped current leads on {names}",
            limit,
        )
    if exporting:
        return Check(
            "direction", "warn", f"every phase exports ({text}): generation on site, or all CTs reversed", limit
        )
    return Check("direction", "pass", f"import on {', '.join(importing)} ({text})", limit)


def _held(values: Mapping[str, float], codes: tuple[str, str]) -> float | None:
    num, den = values.get(codes[0]), values.get(codes[1])
    if num is None:
        return None
    return num / den if den else num


def ratio_check(name: str, given: float, values: Mapping[str, float]) -> Check:
    """``ct_ratio`` or ``vt_ratio``: the ratio given against the one the meter holds (where it holds one)."""
    codes = CT_RATIO_OBIS if name == "ct_ratio" else VT_RATIO_OBIS
    kind = "CT" if name == "ct_ratio" else "VT"
    limit = f"given = held ({codes[0]}/{codes[1]}) within 0.5 %"
    if not 1.0 <= given <= 10_000.0:
        return Check(name, "fail", f"{kind} ratio {given:g} is outside 1..10000", limit)
    held = _held(values, codes)
    if held is None:
        what = "direct connection (1)" if given == 1.0 else f"{kind} ratio {given:g} given"
        return Check(name, "pass", f"{what}; the meter holds no {kind} ratio to compare", limit)
    stated = f"{values[codes[0]]:g}/{values[codes[1]]:g}" if values.get(codes[1]) else f"{held:g}"
    if abs(held - given) <= 0.005 * given:
        return Check(name, "pass", f"given {given:g}, the meter holds {stated} = {held:g}", limit)
    return Check(
        name,
        "fail",
        f"given {given:g}, the meter holds {stated} = {held:g}: set the meter's {kind} ratio or check the {kind}s",
        limit,
    )


def relay_check(relay: RelayState | None, limits: Limits) -> Check:
    """The relay read back against the state expected; "n/a (no relay)" when the meter has none."""
    limit = f"expected {limits.relay_expected}"
    if relay is None:
        return Check("relay", "skip", "not read", limit)
    if not relay.present:
        return Check("relay", "skip", f"n/a (no relay): {relay.detail}" if relay.detail else "n/a (no relay)", limit)
    state = "closed" if relay.closed else "open"
    text = f"{state} ({relay.state or ('connected' if relay.closed else 'disconnected')}): {relay.detail}"
    if limits.relay_expected in ("any", state):
        return Check("relay", "pass", text, limit)
    advice = "the supply is off: reconnect before handing over" if state == "open" else "the supply is on"
    return Check("relay", "fail", f"{text}; {advice}", limit)
