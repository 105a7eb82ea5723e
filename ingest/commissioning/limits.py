"""The pass/fail ranges of a commissioning, stated on the sheet: defaults, a TOML profile, and command-line overrides.

Defaults (docs/commissioning.md):

===========================  ==========  ===================================================================
``nominal_voltage_v``        230         phase-to-neutral; EN 50160 allows +/-10 % (``voltage_tolerance_pct``)
``nominal_frequency_hz``     50          +/-1 % (``frequency_tolerance_pct``, EN 50160 interconnected); or 60
``min_power_factor``         0.5         per phase (or the total where the meter gives no phase PF)
``imax_a``                   model       the meter's Imax: SDM630 100 A, SDM120 45 A, else 100 A; with a CT ratio
                                         6 A x the ratio (a 5 A CT's secondary with 20 % overload)
``clock_tolerance_s``        10          the head-end's clock drift tolerance unless the settings say otherwise
``ct_ratio`` / ``vt_ratio``  1          the installation's (``200/5`` or ``40``), against what the meter holds
``relay_expected``           closed      ``closed``, ``open`` or ``any``
``latency_warn_s``           0.5         a read slower than this is a warning
``latency_fail_s``           2.0         a median read slower than this fails the link
``loss_fail_pct``            20          more failed attempts than this (percent of all) fails the link
``retries``                  2           attempts after the first for a read that timed out or came back broken
===========================  ==========  ===================================================================

A profile is a TOML file with these keys at the top level or under ``[commissioning]``; unknown keys are an error.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from amiflow.errors import ConfigError

__all__ = ["MODEL_IMAX_A", "Limits", "load_limits", "parse_ratio"]

#: Imax of the meter models amiflow knows (datasheets: Eastron SDM630 100 A, SDM120 45 A)
MODEL_IMAX_A = {"SDM630": 100.0, "SDM120": 45.0}
_DEFAULT_IMAX_A = 100.0
_CT_SECONDARY_MAX_A = 6.0


def parse_ratio(text: str | float | int) -> float:
    """``200/5`` -> 40.0, ``40`` -> 40.0; ConfigError for anything else or a ratio outside 1..100000."""
    try:
        if isinstance(text, str) and "/" in text:
            num, den = text.split("/", 1)
            ratio = float(num) / float(den)
        else:
            ratio = float(text)
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"transformer ratio {text!r}: expected a number or PRIMARY/SECONDARY such as 200/5") from None
    if not 1.0 <= ratio <= 100_000.0:
        raise ConfigError(f"transformer ratio {text!r}: must be between 1 and 100000")
    return ratio


@dataclass(frozen=True, slots=True)
class Limits:
    """The ranges every value check uses (see the module docstring for the defaults and their sources)."""

    nominal_voltage_v: float = 230.0
    voltage_tolerance_pct: float = 10.0
    nominal_frequency_hz: float = 50.0
    frequency_tolerance_pct: float = 1.0
    min_power_factor: float = 0.5
    imax_a: float | None = None
    clock_tolerance_s: float = 10.0
    ct_ratio: float = 1.0
    vt_ratio: float = 1.0
    relay_expected: str = "closed"
    latency_warn_s: float = 0.5
    latency_fail_s: float = 2.0
    loss_fail_pct: float = 20.0
    retries: int = 2

    def __post_init__(self) -> None:
        if self.relay_expected not in ("closed", "open", "any"):
            raise ConfigError(f"relay_expected {self.relay_expected!r}: expected closed, open or any")
        if self.nominal_frequency_hz not in (50.0, 60.0):
            raise ConfigError(f"nominal frequency {self.nominal_frequency_hz:g} Hz: expected 50 or 60")
        for name in ("nominal_voltage_v", "voltage_tolerance_pct", "frequency_tolerance_pct", "clock_tolerance_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} {getattr(self, name):g}: must be positive")
        if not 0.0 <= self.min_power_factor <= 1.0:
            raise ConfigError(f"min_power_factor {self.min_power_factor:g}: must be between 0 and 1")
        if self.retries < 0:
            raise ConfigError(f"retries {self.retries}: must be 0 or more")

    @property
    def voltage_range_v(self) -> tuple[float, float]:
        d = self.nominal_voltage_v * self.voltage_tolerance_pct / 100.0
        return self.nominal_voltage_v - d, self.nominal_voltage_v + d

    @property
    def frequency_range_hz(self) -> tuple[float, float]:
        d = self.nominal_frequency_hz * self.frequency_tolerance_pct / 100.0
        return self.nominal_frequency_hz - d, self.nominal_frequency_hz + d

    def imax_for(self, model: str | None) -> tuple[float, str]:
        """The current limit and where it comes from."""
        if self.imax_a is not None:
            return self.imax_a, "given"
        if self.ct_ratio > 1.0:
            return _CT_SECONDARY_MAX_A * self.ct_ratio, f"{_CT_SECONDARY_MAX_A:g} A secondary x CT {self.ct_ratio:g}"
        for name, imax in MODEL_IMAX_A.items():
            if model and name in model.upper():
                return imax, f"{name} Imax"
        return _DEFAULT_IMAX_A, "default Imax"

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def with_changes(self, **changes: Any) -> Limits:
        """A copy with the given fields replaced (None values are ignored); ConfigError for unknown fields."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(f"unknown commissioning limit(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values = {k: v for k, v in changes.items() if v is not None}
        for key in ("ct_ratio", "vt_ratio"):
            if key in values:
                values[key] = parse_ratio(values[key])
        try:
            return replace(self, **values)
        except TypeError as exc:
            raise ConfigError(f"commissioning limits: {exc}") from None


def load_limits(path: str | Path | None, base: Limits | None = None) -> Limits:
    """The limits of a TOML profile (keys at the top or under ``[commissioning]``) over ``base``."""
    limits = base or Limits()
    if path is None:
        return limits
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"commissioning profile {path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"commissioning profile {path}: not valid TOML: {exc}") from None
    table = data.get("commissioning", data)
    if not isinstance(table, dict):
        raise ConfigError(f"commissioning profile {path}: [commissioning] must be a table")
    try:
        return limits.with_changes(**table)
    except ConfigError as exc:
        raise ConfigError(f"commissioning profile {path}: {exc}") from None
