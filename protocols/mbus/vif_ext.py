"""The VIF extension tables of EN 13757-3 annex C: FD (table C.3, "main" extension) and FB (table C.4, "first"
extension). The VIFE after an FD or FB byte selects the entry; its own extension bit says whether combinable VIFEs
(:func:`protocols.mbus.vif.apply_vife`) follow.

FD: ``E000 00nn`` credit / ``E000 01nn`` debit 10^(nn-3) currency units, ``08`` access number, ``09`` medium,
``0A`` manufacturer, ``0B`` parameter set id, ``0C`` model/version, ``0D``-``0F`` hardware / firmware / software
version, ``10`` customer location, ``11`` customer, ``12``-``16`` access codes and password, ``17`` error flags,
``18`` error mask, ``1A``/``1B`` digital output/input, ``1C`` baud rate, ``1D`` response delay (bit times),
``1E`` retry, ``1F`` remote control, ``20``-``22`` storage numbers and block size, ``24``-``29`` storage interval,
``2C``-``2F`` duration since last readout, ``30`` start of tariff, ``31``-``33`` tariff duration, ``34``-``39``
tariff period, ``3A`` dimensionless, ``E100 nnnn`` volts 10^(nnnn-9), ``E101 nnnn`` amperes 10^(nnnn-12), ``60``-``67``
counters, day of week, week number, day change, parameter activation, supplier information, ``68``-``6B``
duration since last cumulation, ``6C``-``6F`` battery operating time, ``70`` battery change date, ``71`` RF level
dBm, ``72`` daylight saving, ``73`` listening window, ``74`` remaining battery life (days), ``75`` times the meter
was stopped, ``76`` data container for a manufacturer protocol.

FB: ``E000 000n`` energy 10^(n-1) MWh, ``E000 001n`` reactive energy 10^n kvarh, ``E000 100n`` energy 10^(n-1) GJ,
``E001 000n`` volume 10^(n+2) m3, ``E001 100n`` mass 10^(n+2) t, ``E001 101n`` relative humidity 10^(n-1) % (EN
13757-3:2013), ``21`` 0.1 cubic feet, ``22``/``23`` 0.1 / 1 US gallon, ``24``-``26`` US gallons per minute (x 0.001)
/ per minute / per hour, ``E010 100n`` power 10^(n-1) MW, ``E011 000n`` power 10^(n-1) GJ/h, ``E101 10nn`` / ``E101
11nn`` / ``E110 00nn`` / ``E110 01nn`` flow / return temperature, temperature difference, external temperature in
10^(nn-3) degF, ``E111 00nn`` / ``E111 01nn`` cold-warm temperature limit in degF / degC, ``E111 1nnn`` cumulative
count of maximum power 10^(nnn-3) W. Imperial units are converted to the base units (m3, m3/h, degC, K).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

from .vif import TIME_UNITS, ValueInfo

__all__ = ["fb_vife", "fd_vife"]

_MONTH: Final = "month"
_YEAR: Final = "year"
_FD_SINGLES: Final = {
    0x08: ValueInfo("access_number"),
    0x09: ValueInfo("medium"),
    0x0A: ValueInfo("manufacturer", kind="text"),
    0x0B: ValueInfo("parameter_set_id", kind="text"),
    0x0C: ValueInfo("model_version", kind="text"),
    0x0D: ValueInfo("hardware_version", kind="text"),
    0x0E: ValueInfo("firmware_version", kind="text"),
    0x0F: ValueInfo("software_version", kind="text"),
    0x10: ValueInfo("customer_location", kind="text"),
    0x11: ValueInfo("customer", kind="text"),
    0x12: ValueInfo("access_code_user", kind="text"),
    0x13: ValueInfo("access_code_operator", kind="text"),
    0x14: ValueInfo("access_code_system_operator", kind="text"),
    0x15: ValueInfo("access_code_developer", kind="text"),
    0x16: ValueInfo("password", kind="text"),
    0x17: ValueInfo("error_flags"),
    0x18: ValueInfo("error_mask"),
    0x1A: ValueInfo("digital_output"),
    0x1B: ValueInfo("digital_input"),
    0x1C: ValueInfo("baudrate", "Bd"),
    0x1D: ValueInfo("response_delay", "bit_times"),
    0x1E: ValueInfo("retry"),
    0x1F: ValueInfo("remote_control"),
    0x20: ValueInfo("first_storage_number"),
    0x21: ValueInfo("last_storage_number"),
    0x22: ValueInfo("storage_block_size"),
    0x28: ValueInfo("storage_interval", _MONTH),
    0x29: ValueInfo("storage_interval", _YEAR),
    0x30: ValueInfo("tariff_start", kind="datetime"),
    0x38: ValueInfo("tariff_period", _MONTH),
    0x39: ValueInfo("tariff_period", _YEAR),
    0x3A: ValueInfo("dimensionless"),
    0x60: ValueInfo("reset_counter"),
    0x61: ValueInfo("cumulation_counter"),
    0x62: ValueInfo("control_signal"),
    0x63: ValueInfo("day_of_week"),
    0x64: ValueInfo("week_number"),
    0x65: ValueInfo("day_change_time"),
    0x66: ValueInfo("parameter_activation_state"),
    0x67: ValueInfo("special_supplier_information"),
    0x70: ValueInfo("battery_change_datetime", kind="datetime"),
    0x71: ValueInfo("rf_level", "dBm"),
    0x72: ValueInfo("daylight_saving"),
    0x73: ValueInfo("listening_window"),
    0x74: ValueInfo("remaining_battery_life", "s", 0, TIME_UNITS[3]),
    0x75: ValueInfo("meter_stopped_count"),
    0x76: ValueInfo("manufacturer_protocol_container", kind="raw"),
}
_LONG_DURATIONS: Final = (TIME_UNITS[2], TIME_UNITS[3])  # hours, days; then months, years


def _long_duration(name: int | str, n: int) -> ValueInfo:
    if n < 2:
        return ValueInfo(str(name), "s", 0, _LONG_DURATIONS[n])
    return ValueInfo(str(name), _MONTH if n == 2 else _YEAR)


def fd_vife(vife: int) -> ValueInfo:
    """The meaning of the VIFE after FD (table C.3); ``reserved`` for codes the table leaves free."""
    code = vife & 0x7F
    if code < 0x08:
        return ValueInfo("credit" if code < 4 else "debit", "currency", (code & 0x03) - 3)
    if code in _FD_SINGLES:
        return _FD_SINGLES[code]
    if 0x24 <= code <= 0x27:
        return ValueInfo("storage_interval", "s", 0, TIME_UNITS[code & 3])
    if 0x2C <= code <= 0x2F:
        return ValueInfo("duration_since_readout", "s", 0, TIME_UNITS[code & 3])
    if 0x31 <= code <= 0x33:
        return ValueInfo("tariff_duration", "s", 0, TIME_UNITS[code & 3])
    if 0x34 <= code <= 0x37:
        return ValueInfo("tariff_period", "s", 0, TIME_UNITS[code & 3])
    if 0x40 <= code <= 0x4F:
        return ValueInfo("voltage", "V", (code & 0x0F) - 9)
    if 0x50 <= code <= 0x5F:
        return ValueInfo("current", "A", (code & 0x0F) - 12)
    if 0x68 <= code <= 0x6B:
        return _long_duration("duration_since_cumulation", code & 3)
    if 0x6C <= code <= 0x6F:
        return _long_duration("battery_operating_time", code & 3)
    return ValueInfo("reserved")


_FT3: Final = Decimal("0.028316846592")  # m3 per cubic foot
_GALLON: Final = Decimal("0.003785411784")  # m3 per US gallon
_F_SCALE: Final = Decimal(5) / Decimal(9)
_F_OFFSET: Final = Decimal(-32) * _F_SCALE
_FB_SINGLES: Final = {
    0x21: ValueInfo("volume", "m3", -1, _FT3),
    0x22: ValueInfo("volume", "m3", -1, _GALLON),
    0x23: ValueInfo("volume", "m3", 0, _GALLON),
    0x24: ValueInfo("volume_flow", "m3/h", -3, _GALLON * 60),
    0x25: ValueInfo("volume_flow", "m3/h", 0, _GALLON * 60),
    0x26: ValueInfo("volume_flow", "m3/h", 0, _GALLON),
}
_FB_FAHRENHEIT: Final = {
    0x58: ("flow_temperature", "degC", True),
    0x5C: ("return_temperature", "degC", True),
    0x60: ("temperature_difference", "K", False),
    0x64: ("external_temperature", "degC", True),
    0x70: ("temperature_limit", "degC", True),
}


def fb_vife(vife: int) -> ValueInfo:
    """The meaning of the VIFE after FB (table C.4); ``reserved`` for codes the table leaves free."""
    code = vife & 0x7F
    n = code & 0x01
    if code in (0x00, 0x01):
        return ValueInfo("energy", "Wh", n - 1 + 6)
    if code in (0x02, 0x03):
        return ValueInfo("reactive_energy", "varh", n + 3)
    if code in (0x08, 0x09):
        return ValueInfo("energy", "J", n - 1 + 9)
    if code in (0x10, 0x11):
        return ValueInfo("volume", "m3", n + 2)
    if code in (0x18, 0x19):
        return ValueInfo("mass", "kg", n + 2 + 3)
    if code in (0x1A, 0x1B):
        return ValueInfo("relative_humidity", "%", n - 1)
    if code in _FB_SINGLES:
        return _FB_SINGLES[code]
    if code in (0x28, 0x29):
        return ValueInfo("power", "W", n - 1 + 6)
    if code in (0x30, 0x31):
        return ValueInfo("power", "J/h", n - 1 + 9)
    base = code & 0x7C
    if base in _FB_FAHRENHEIT:
        quantity, unit, absolute = _FB_FAHRENHEIT[base]
        return ValueInfo(quantity, unit, (code & 0x03) - 3, _F_SCALE, _F_OFFSET if absolute else Decimal(0))
    if base == 0x74:
        return ValueInfo("temperature_limit", "degC", (code & 0x03) - 3)
    if code >= 0x78:
        return ValueInfo("cumulative_max_power", "W", (code & 0x07) - 3)
    return ValueInfo("reserved")
