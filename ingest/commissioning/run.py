"""Commissioning a meter: connect, identify, read twice, check the clock, read the relay back, and judge it all.

The I/O runs through a :class:`~ingest.commissioning.link.MeasuredLink` (timed reads, retries, the unit-id hint);
the judging is pure (:mod:`.checks`, :mod:`.supply`, :mod:`.wiring`). Nothing a meter does wrong raises: it becomes
a failed check in the :class:`~ingest.commissioning.report.CommissioningReport`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TextIO

from amiflow.errors import AmiflowError
from amiflow.types import ReadingBatch
from amiflow.uri import MeterUri
from ingest.commissioning.checks import clock_check, identity_check, link_check, plausibility
from ingest.commissioning.limits import Limits
from ingest.commissioning.link import MeasuredLink
from ingest.commissioning.report import Check, CommissioningReport
from ingest.meter_quantities import Quantity, RelayState, base_unit
from ingest.meter_sessions import MeterSession, SessionFactory, SheetSession, open_session

__all__ = ["commission"]

_PROTOCOL_NAMES = {"dlms": "DLMS/COSEM", "modbus": "Modbus", "iec62056-21": "IEC 62056-21", "mqtt": "MQTT"}


def _from_batch(batch: ReadingBatch) -> list[Quantity]:
    out = []
    for code, value, unit in zip(batch.obis.tolist(), batch.value.tolist(), batch.unit.tolist(), strict=True):
        base, factor = base_unit(str(unit or ""))
        out.append(Quantity(str(code), float(value) * factor, base, float(value), str(unit or ""), "base unit"))
    return out


async def _quantities(session: MeterSession, at: datetime) -> list[Quantity]:
    if isinstance(session, SheetSession):
        return await session.read_quantities()
    return _from_batch(await session.read_registers(at))


async def _relay(session: MeterSession) -> RelayState | None:
    return await session.read_relay() if isinstance(session, SheetSession) else None


def _limits(limits: Limits | None, clock_tolerance_s: float | None, ct_ratio: float | None) -> Limits:
    lim = limits or Limits()
    changes: dict[str, float] = {}
    if clock_tolerance_s is not None:
        changes["clock_tolerance_s"] = clock_tolerance_s
    if ct_ratio is not None and 1.0 <= ct_ratio <= 100_000.0:
        changes["ct_ratio"] = ct_ratio
    return lim.with_changes(**changes) if changes else lim


async def commission(
    uri: MeterUri,
    *,
    meter: str | None = None,
    sync_clock: bool = False,
    clock_tolerance_s: float | None = None,
    timeout_s: float = 5.0,
    ct_ratio: float | None = None,
    limits: Limits | None = None,
    session_factory: SessionFactory = open_session,
    clock: Callable[[], float] = time.time,
    progress: TextIO | None = None,
    pause_s: float = 1.0,
) -> CommissioningReport:
    """Run the commissioning checks against the meter at ``uri`` (``limits``: the ranges; ``clock_tolerance_s`` and
    ``ct_ratio`` override them); raises nothing for a meter's fault."""
    lim = _limits(limits, clock_tolerance_s, ct_ratio)
    given_ct = ct_ratio if ct_ratio is not None else lim.ct_ratio
    name = meter or uri.params.get("meter") or (uri.host or uri.path or "meter")
    report = CommissioningReport(str(uri), meter, datetime.fromtimestamp(clock(), UTC).isoformat())
    report.protocol = _PROTOCOL_NAMES.get(uri.protocol, uri.protocol)
    report.limits = lim.to_json()

    def say(text: str) -> None:
        if progress is not None:
            print(f"  {text}", file=progress, flush=True)

    link = MeasuredLink(session_factory, name, uri, timeout_s, lim.retries)
    connected = False
    first: dict[str, float] = {}
    second: dict[str, float] = {}
    try:
        say(f"connecting to {uri} ...")
        async with link:
            connected = True
            report.checks.append(Check("connect", "pass", "the meter answered"))
            say("identifying ...")
            identity = await link.call("identify", lambda s: s.identify())
            report.identity = {k: v for k, v in identity.items() if v is not None}
            report.checks.append(identity_check(report.identity))
            say("reading registers ...")
            now = datetime.fromtimestamp(clock(), UTC)
            report.quantities = await link.call("read", lambda s: _quantities(s, now))
            first = {q.obis: q.value for q in report.quantities}
            report.values = first
            report.checks.append(Check("read", "pass" if first else "fail", f"{len(first)} values read"))
            await asyncio.sleep(pause_s)
            later = datetime.fromtimestamp(clock(), UTC)
            second = {q.obis: q.value for q in await link.call("read", lambda s: _quantities(s, later))}
            say("checking the clock ...")
            report.checks.append(await _clock(link, report, lim, sync_clock, clock))
            say("reading the relay back ...")
            try:
                report.relay = await link.call("relay", _relay)
            except AmiflowError as exc:
                report.checks.append(Check("relay", "fail", f"not read: {type(exc).__name__}: {exc}"))
        model = str(report.identity.get("model") or report.identity.get("map") or "")
        has_relay_check = any(c.name == "relay" for c in report.checks)
        relay = None if has_relay_check else report.relay or RelayState(False, detail="the protocol reads no relay")
        report.checks.extend(plausibility(first, second, given_ct, lim, model=model, relay=relay))
    except AmiflowError as exc:
        stage = "connect" if not report.checks else "read"
        report.checks.append(Check(stage, "fail", f"{type(exc).__name__}: {exc}"))
    report.link = link.quality()
    if connected:
        report.checks.append(link_check(report.link, lim))
    for check in report.checks:
        say(f"{check.status.upper():4} {check.name}: {check.detail}")
    return report


async def _clock(
    link: MeasuredLink, report: CommissioningReport, lim: Limits, sync_clock: bool, clock: Callable[[], float]
) -> Check:
    meter_clock = await link.call("clock", lambda s: s.read_clock())
    if meter_clock is None:
        return clock_check(None, lim)
    offset = meter_clock.timestamp() - clock()
    report.clock_offset_s = round(offset, 3)
    report.meter_clock = meter_clock.astimezone(UTC).isoformat()
    if abs(offset) <= lim.clock_tolerance_s or not sync_clock:
        return clock_check(offset, lim)
    try:
        await link.call("set clock", lambda s: s.set_clock(datetime.fromtimestamp(clock(), UTC)))
    except AmiflowError as exc:  # e.g. the public client may not SET: the drift stands, with the reason
        return Check(
            "clock",
            "fail",
            f"drift {offset:+.1f} s; setting the clock failed: {exc}",
            f"|drift| <= {lim.clock_tolerance_s:g} s",
        )
    after = await link.call("clock", lambda s: s.read_clock())
    return clock_check(offset, lim, after_set_s=after.timestamp() - clock() if after else offset)
