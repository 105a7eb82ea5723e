"""The checks of a commissioning that need no I/O, and :func:`plausibility`, every value check at once.

``identify`` (a serial number), ``clock`` (drift against the head-end within tolerance, before and after a set),
``monotonic`` (energy registers do not decrease between two reads), ``link`` (retries, lost attempts, latency); the
supply checks are in :mod:`.supply`, the wiring checks in :mod:`.wiring`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ingest.commissioning.limits import Limits
from ingest.commissioning.phases import phase_picture
from ingest.commissioning.report import Check, LinkQuality
from ingest.commissioning.supply import current_check, frequency_check, power_check, power_factor_check, voltage_check
from ingest.commissioning.wiring import direction_check, phase_sequence_check, ratio_check, relay_check
from ingest.meter_quantities import RelayState

__all__ = ["ENERGY", "clock_check", "identity_check", "link_check", "monotonic_check", "plausibility"]

ENERGY = ("1-0:1.8.0", "1-0:2.8.0")


def identity_check(identity: Mapping[str, Any]) -> Check:
    """A serial number is required; missing manufacturer, model or firmware are named."""
    serial = identity.get("serial")
    if not serial:
        return Check("identify", "fail", "no serial number reported", "a serial number")
    missing = [k for k in ("manufacturer", "model", "firmware") if not identity.get(k)]
    return Check("identify", "pass", f"serial {serial}" + (f"; not reported: {', '.join(missing)}" if missing else ""))


def clock_check(offset_s: float | None, limits: Limits, *, after_set_s: float | None = None) -> Check:
    """Meter clock minus head-end clock within the tolerance (``after_set_s``: the offset after --sync-clock)."""
    limit = f"|drift| <= {limits.clock_tolerance_s:g} s"
    if offset_s is None:
        return Check("clock", "skip", "the meter keeps no clock", limit)
    offset_s = round(offset_s, 1) + 0.0  # never "-0.0 s"
    after_set_s = None if after_set_s is None else round(after_set_s, 1) + 0.0
    if after_set_s is not None:
        ok = abs(after_set_s) <= limits.clock_tolerance_s
        return Check(
            "clock", "pass" if ok else "fail", f"drift {offset_s:+.1f} s, set; now {after_set_s:+.1f} s", limit
        )
    ok = abs(offset_s) <= limits.clock_tolerance_s
    return Check(
        "clock",
        "pass" if ok else "fail",
        f"drift {offset_s:+.1f} s (tolerance {limits.clock_tolerance_s:g} s)"
        + ("" if ok else ": set it with --sync-clock"),
        limit,
    )


def monotonic_check(first: Mapping[str, float], second: Mapping[str, float]) -> Check:
    """The energy registers did not decrease between two reads."""
    regs = [o for o in ENERGY if o in first and o in second]
    if not regs:
        return Check("monotonic", "skip", "no energy register")
    down = [o for o in regs if second[o] < first[o]]
    if down:
        return Check("monotonic", "fail", f"{', '.join(down)} decreased between two reads")
    return Check("monotonic", "pass", f"{', '.join(regs)} did not decrease")


def link_check(link: LinkQuality, limits: Limits) -> Check:
    """Lost attempts and slow reads: fail beyond ``loss_fail_pct`` or a median above ``latency_fail_s``; warn on
    any retry or a read slower than ``latency_warn_s``."""
    limit = (
        f"lost <= {limits.loss_fail_pct:g} %, median <= {limits.latency_fail_s:g} s;"
        f" warn on retries or a read > {limits.latency_warn_s:g} s"
    )
    if not link.attempts:
        return Check("link", "skip", "no read was attempted", limit)
    median = link.median_latency_s
    worst = link.max_latency_s
    latency = "" if median is None or worst is None else f"; latency median {_s(median)}, max {_s(worst)}"
    detail = (
        f"{link.attempts} attempt{'s' if link.attempts != 1 else ''}, {link.retries} retr"
        f"{'y' if link.retries == 1 else 'ies'}, {link.failures} failed{latency}"
    )
    lost_pct = 100.0 * link.failures / link.attempts
    if lost_pct > limits.loss_fail_pct or (median is not None and median > limits.latency_fail_s):
        return Check("link", "fail", f"{detail}: a lossy or slow link", limit)
    if link.retries or (worst is not None and worst > limits.latency_warn_s):
        return Check("link", "warn", detail, limit)
    return Check("link", "pass", detail, limit)


def _s(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1.0 else f"{seconds:.2f} s"


def plausibility(
    values: Mapping[str, float],
    second: Mapping[str, float],
    ct_ratio: float = 1.0,
    limits: Limits | None = None,
    *,
    model: str | None = None,
    relay: RelayState | None = None,
) -> list[Check]:
    """Every value check of a commissioning (pure): the supply, the wiring, the registers' direction of travel.

    ``values``/``second``: two reads in base units by OBIS code; ``ct_ratio`` the ratio given (overrides
    ``limits.ct_ratio``); ``relay``: the relay read back (None: the relay check is left out)."""
    lim = limits or Limits()
    phases = phase_picture(values)
    checks = [
        voltage_check(phases, lim),
        frequency_check(values, lim),
        power_factor_check(phases, values, lim),
        current_check(phases, _with_ct(lim, ct_ratio), model),
        power_check(phases, values),
        phase_sequence_check(phases, values),
        direction_check(phases),
        monotonic_check(values, second),
        ratio_check("ct_ratio", ct_ratio, values),
        ratio_check("vt_ratio", lim.vt_ratio, values),
    ]
    if relay is not None:
        checks.append(relay_check(relay, lim))
    return checks


def _with_ct(limits: Limits, ct_ratio: float) -> Limits:
    if ct_ratio == limits.ct_ratio or not 1.0 <= ct_ratio <= 100_000.0:
        return limits
    return limits.with_changes(ct_ratio=ct_ratio)
