"""Value information (EN 13757-3 clause 6.4 and annex C): the primary VIF table and the combinable VIFEs.

A VIF byte is ``E nnnnnnn``: E (0x80) says a VIFE follows. Primary VIFs (``n`` = the low bits, value = data *
10^exponent in the unit)::

    0000 0nnn Energy Wh 10^(n-3)       0000 1nnn Energy J 10^n            0001 0nnn Volume m3 10^(n-6)
    0001 1nnn Mass kg 10^(n-3)         0010 00nn On time s/min/h/d        0010 01nn Operating time
    0010 1nnn Power W 10^(n-3)         0011 0nnn Power J/h 10^n           0011 1nnn Volume flow m3/h 10^(n-6)
    0100 0nnn Volume flow m3/min 10^(n-7)    0100 1nnn Volume flow m3/s 10^(n-9)   0101 0nnn Mass flow kg/h 10^(n-3)
    0101 10nn Flow temperature degC 10^(nn-3)    0101 11nn Return temperature    0110 00nn Temperature difference K
    0110 01nn External temperature degC  0110 10nn Pressure bar 10^(nn-3)   0110 110n Date (G) / date and time (F, I, J)
    0110 1110 H.C.A. units             0111 00nn Averaging duration       0111 01nn Actuality duration
    0111 1000 Fabrication number       0111 1001 Enhanced identification  0111 1010 Bus address
    1111 1011 (FB) / 1111 1101 (FD) extension tables (:mod:`.vif_ext`)   x111 1100 plain text VIF (ASCII unit)
    x111 1110 any VIF (readout)        x111 1111 manufacturer specific

Values are converted to base units here: durations to seconds, volume flow per minute or second to m3/h, so a
record's ``unit`` is one of Wh, J, m3, kg, s, W, J/h, m3/h, kg/h, degC, K, bar, V, A, varh (or a plain-text unit).

Combinable VIFEs (annex C table C.5) after a VIF: ``E000 xxxx``/``E001 xxxx`` record errors, ``E010 xxxx`` per
time / per unit, ``13`` / ``1E`` / ``1F`` (OMS) inverse / register / plain compact profile (data kept as
hex), ``0x3A`` uncorrected unit, ``0x3B`` / ``0x3C`` accumulation of positive / of the absolute value of
negative contributions (import / export), ``0x39`` start date of, ``E111 0nnn`` multiplicative correction factor
10^(nnn-6) (applied), ``E111 10nn`` additive correction constant, ``0x7D`` factor 10^3 (applied), ``0x7E`` future
value, ``0x7F`` manufacturer specific VIFEs follow (kept by name; the value is still read as the DIF says). Each
becomes a ``modifier`` name on the record.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Final

__all__ = ["TIME_UNITS", "ValueInfo", "apply_vife", "primary_vif"]

#: nn of the duration VIFs -> seconds
TIME_UNITS: Final = (Decimal(1), Decimal(60), Decimal(3600), Decimal(86400))


@dataclass(frozen=True, slots=True)
class ValueInfo:
    """What a VIF (and its VIFEs) says: ``value = data * 10**exponent * factor + offset`` in ``unit``.

    ``kind``: ``number``, ``date``, ``datetime`` (or a time of day, by data length), ``text`` (an identifier sent as
    a number or text, such as a fabrication number), ``raw`` (manufacturer specific: bytes as hex).
    """

    quantity: str
    unit: str = ""
    exponent: int = 0
    factor: Decimal = Decimal(1)
    offset: Decimal = Decimal(0)
    kind: str = "number"
    modifiers: tuple[str, ...] = ()

    def scaled(self, raw: int) -> float:
        """The value of an integer or BCD data field in the base unit, computed exactly then rounded once."""
        value = Decimal(raw).scaleb(self.exponent)
        if self.factor != 1 or self.offset:
            value = value * self.factor + self.offset
        return float(value)

    def scaled_real(self, raw: float) -> float:
        return float(Decimal(repr(raw)).scaleb(self.exponent) * self.factor + self.offset)


def primary_vif(vif: int) -> ValueInfo:
    """The meaning of a primary VIF (the extension bit ignored); FB, FD, 7C, 7E and 7F are handled by the caller."""
    code = vif & 0x7F
    group = code >> 3
    n = code & 0x07
    if group <= 7:
        return _PRIMARY_GROUPS[group](n)
    if group <= 10:
        return _FLOW_GROUPS[group](n)
    return _small(code)


def _energy_wh(n: int) -> ValueInfo:
    return ValueInfo("energy", "Wh", n - 3)


def _energy_j(n: int) -> ValueInfo:
    return ValueInfo("energy", "J", n)


def _volume(n: int) -> ValueInfo:
    return ValueInfo("volume", "m3", n - 6)


def _mass(n: int) -> ValueInfo:
    return ValueInfo("mass", "kg", n - 3)


def _times(n: int) -> ValueInfo:
    name = "on_time" if n < 4 else "operating_time"
    return ValueInfo(name, "s", 0, TIME_UNITS[n & 3])


def _power_w(n: int) -> ValueInfo:
    return ValueInfo("power", "W", n - 3)


def _power_jh(n: int) -> ValueInfo:
    return ValueInfo("power", "J/h", n)


def _flow(n: int) -> ValueInfo:
    return ValueInfo("volume_flow", "m3/h", n - 6)


_PRIMARY_GROUPS: Final = (_energy_wh, _energy_j, _volume, _mass, _times, _power_w, _power_jh, _flow)
_FLOW_GROUPS: Final = {
    8: lambda n: ValueInfo("volume_flow", "m3/h", n - 7, Decimal(60)),
    9: lambda n: ValueInfo("volume_flow", "m3/h", n - 9, Decimal(3600)),
    10: lambda n: ValueInfo("mass_flow", "kg/h", n - 3),
}
_TEMPERATURES: Final = {
    0x58: ("flow_temperature", "degC"),
    0x5C: ("return_temperature", "degC"),
    0x60: ("temperature_difference", "K"),
    0x64: ("external_temperature", "degC"),
    0x68: ("pressure", "bar"),
}
_SINGLES: Final = {
    0x6C: ValueInfo("date", kind="date"),
    0x6D: ValueInfo("datetime", kind="datetime"),
    0x6E: ValueInfo("hca_units"),
    0x6F: ValueInfo("reserved"),
    0x78: ValueInfo("fabrication_number", kind="text"),
    0x79: ValueInfo("enhanced_identification", kind="text"),
    0x7A: ValueInfo("bus_address"),
    0x7B: ValueInfo("reserved"),
    0x7D: ValueInfo("reserved"),
    0x7E: ValueInfo("any_vif"),
    0x7F: ValueInfo("manufacturer_specific"),
}


def _small(code: int) -> ValueInfo:
    base = code & 0x7C
    if base in _TEMPERATURES:
        quantity, unit = _TEMPERATURES[base]
        return ValueInfo(quantity, unit, (code & 0x03) - 3)
    if base in (0x70, 0x74):
        name = "averaging_duration" if base == 0x70 else "actuality_duration"
        return ValueInfo(name, "s", 0, TIME_UNITS[code & 3])
    return _SINGLES.get(code, ValueInfo("reserved"))


_VIFE_NAMES: Final = {
    0x13: "inverse_compact_profile",
    0x1E: "compact_profile_registers",
    0x1F: "compact_profile",
    0x20: "per_second",
    0x21: "per_minute",
    0x22: "per_hour",
    0x23: "per_day",
    0x24: "per_week",
    0x25: "per_month",
    0x26: "per_year",
    0x27: "per_revolution",
    0x28: "per_input_pulse_0",
    0x29: "per_input_pulse_1",
    0x2A: "per_output_pulse_0",
    0x2B: "per_output_pulse_1",
    0x2C: "per_litre",
    0x2D: "per_m3",
    0x2E: "per_kg",
    0x2F: "per_kelvin",
    0x30: "per_kwh",
    0x31: "per_gj",
    0x32: "per_kw",
    0x33: "per_kelvin_litre",
    0x34: "per_volt",
    0x35: "per_ampere",
    0x36: "times_second",
    0x37: "times_second_per_volt",
    0x38: "times_second_per_ampere",
    0x39: "start_date_of",
    0x3A: "uncorrected",
    0x3B: "accumulation_positive",
    0x3C: "accumulation_negative",
    0x7E: "future_value",
    0x7F: "manufacturer_specific",
}
_PROFILES: Final = frozenset((0x13, 0x1E, 0x1F))
_LIMITS: Final = ("lower_limit", "exceeds_of_lower_limit", "upper_limit", "exceeds_of_upper_limit")


def apply_vife(info: ValueInfo, vife: int) -> ValueInfo:
    """``info`` changed by one combinable VIFE: correction factors are applied, everything else is named."""
    code = vife & 0x7F
    if 0x70 <= code <= 0x77:
        return replace(info, exponent=info.exponent + (code & 0x07) - 6)
    if code == 0x7D:
        return replace(info, exponent=info.exponent + 3)
    if code in _VIFE_NAMES:
        name = _VIFE_NAMES[code]
        if code in _PROFILES:  # a binary profile in an LVAR field
            return replace(info, kind="raw", modifiers=(*info.modifiers, name))
    elif code < 0x20:
        name = f"error_{code:02x}" if code else "no_error"
    elif 0x40 <= code <= 0x4F and code & 0x07 in (0, 1):
        name = _LIMITS[(code >> 3 & 1) * 2 + (code & 1)]
    elif 0x78 <= code <= 0x7B:
        name = f"additive_correction_e{(code & 0x03) - 3}"
    else:
        name = f"vife_{code:02x}"
    return replace(info, modifiers=(*info.modifiers, name))
