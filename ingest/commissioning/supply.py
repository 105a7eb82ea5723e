"""The supply checks (pure): phase voltage, frequency, power factor, current against Imax, and active power.

Each takes the per-phase picture (:func:`ingest.commissioning.phases.phase_picture`) or the values in base units and
the :class:`~ingest.commissioning.limits.Limits`, and returns one :class:`~ingest.commissioning.report.Check` whose
``limit`` states the range it was held to.
"""

from __future__ import annotations

from collections.abc import Mapping

from ingest.commissioning.limits import Limits
from ingest.commissioning.phases import FREQUENCY, TOTAL_EXPORT, TOTAL_IMPORT, TOTAL_PF, Phase
from ingest.commissioning.report import Check

__all__ = ["IDLE_W", "current_check", "frequency_check", "power_check", "power_factor_check", "voltage_check"]

IDLE_W = 5.0  # a phase carrying less active power than this has no load to judge PF or direction by


def _listing(items: list[tuple[str, str]]) -> str:
    return ", ".join(f"{name} {text}" for name, text in items)


def voltage_check(phases: list[Phase], limits: Limits) -> Check:
    """Each phase voltage within nominal +/- tolerance (EN 50160: 230 V +/-10 %)."""
    low, high = limits.voltage_range_v
    limit = f"{low:.1f}-{high:.1f} V ({limits.nominal_voltage_v:g} V +/-{limits.voltage_tolerance_pct:g} %, EN 50160)"
    volts = [(p.name, p.voltage_v) for p in phases if p.voltage_v is not None]
    if not volts:
        return Check("voltage", "skip", "the meter reports no phase voltage", limit)
    bad = [(n, v) for n, v in volts if not low <= v <= high]
    if bad:
        text = _listing([(n, f"{v:.1f} V {'below' if v < low else 'above'} the range") for n, v in bad])
        return Check("voltage", "fail", text, limit)
    return Check("voltage", "pass", _listing([(n, f"{v:.1f} V") for n, v in volts]), limit)


def frequency_check(values: Mapping[str, float], limits: Limits) -> Check:
    """The supply frequency within nominal +/- tolerance (50 Hz +/-1 %; 60 Hz by option)."""
    low, high = limits.frequency_range_hz
    limit = f"{low:.2f}-{high:.2f} Hz ({limits.nominal_frequency_hz:g} Hz +/-{limits.frequency_tolerance_pct:g} %)"
    hz = values.get(FREQUENCY)
    if hz is None:
        return Check("frequency", "skip", "the meter reports no frequency (1-0:14.7.0)", limit)
    if not low <= hz <= high:
        return Check("frequency", "fail", f"{hz:.2f} Hz {'below' if hz < low else 'above'} the range", limit)
    return Check("frequency", "pass", f"{hz:.2f} Hz", limit)


def power_factor_check(phases: list[Phase], values: Mapping[str, float], limits: Limits) -> Check:
    """|PF| of each loaded phase (or the total where the meter gives no phase PF) at least the minimum."""
    limit = f">= {limits.min_power_factor:.2f} (absolute, per loaded phase)"
    loaded = [p for p in phases if p.power_factor is not None and (p.power_w is None or abs(p.power_w) >= IDLE_W)]
    items = [(p.name, abs(p.power_factor)) for p in loaded if p.power_factor is not None]
    if not items and TOTAL_PF in values:
        items = [("total", abs(values[TOTAL_PF]))]
    if not items:
        idle = any(p.power_factor is not None for p in phases)
        reason = "no phase carries load" if idle else "the meter reports no power factor (1-0:13.7.0, 33.7.0 ...)"
        return Check("power_factor", "skip", reason, limit)
    bad = [(n, pf) for n, pf in items if pf < limits.min_power_factor]
    if bad:
        return Check("power_factor", "fail", _listing([(n, f"{pf:.2f} below the minimum") for n, pf in bad]), limit)
    return Check("power_factor", "pass", _listing([(n, f"{pf:.2f}") for n, pf in items]), limit)


def current_check(phases: list[Phase], limits: Limits, model: str | None) -> Check:
    """Each phase current at most the meter's Imax (or 6 A secondary x the CT ratio on a CT meter)."""
    imax, source = limits.imax_for(model)
    limit = f"<= {imax:g} A ({source})"
    amps = [(p.name, p.current_a) for p in phases if p.current_a is not None]
    if not amps:
        return Check("current", "skip", "the meter reports no phase current", limit)
    bad = [(n, a) for n, a in amps if abs(a) > imax]
    if bad:
        return Check("current", "fail", _listing([(n, f"{abs(a):.2f} A above Imax") for n, a in bad]), limit)
    return Check("current", "pass", _listing([(n, f"{abs(a):.2f} A") for n, a in amps]), limit)


def power_check(phases: list[Phase], values: Mapping[str, float]) -> Check:
    """Active power not above what voltage and current allow: |P| <= sum of V*I, +5 % for meter accuracy, +5 W."""
    limit = "|P| <= sum V*I (+5 %, +5 W)"
    pairs = [(p.voltage_v, p.current_a) for p in phases if p.voltage_v is not None and p.current_a is not None]
    if not pairs or TOTAL_IMPORT not in values or not any(a for _, a in pairs):
        return Check("power", "skip", "needs voltage, current and active power", limit)
    apparent = sum(v * abs(a) for v, a in pairs)
    power = abs(values[TOTAL_IMPORT]) - abs(values.get(TOTAL_EXPORT, 0.0))
    ok = abs(power) <= apparent * 1.05 + 5.0
    detail = f"|P| {abs(power):.0f} W {'<=' if ok else '>'} V*I {apparent:.0f} W"
    return Check("power", "pass" if ok else "fail", detail, limit)
