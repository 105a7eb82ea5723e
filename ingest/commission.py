"""Commissioning a meter: identify it, test-read it and check the values, with a pass/fail report.

Checks (each passes, fails or is skipped with the reason):
- ``connect``: the link opens and the meter answers (association accepted);
- ``identify``: serial number (and manufacturer, model, firmware where the protocol offers them);
- ``read``: every mapped register reads;
- ``clock``: drift against the head-end clock within tolerance (set with --sync-clock);
- ``voltage``: each phase voltage within nominal +/-10 % (EN 50160 supply limits; 230 V nominal by default);
- ``power``: active power not above what voltage and current allow (|P| <= sum V*I, +5 % for meter accuracy);
- ``monotonic``: energy registers do not decrease between two reads;
- ``ct_ratio``: a CT ratio between 1 and 10,000 and, for CT meters, a secondary current at most 6 A (5 A CTs).
:func:`store_report` keeps the report in amiflow.commissioning_reports and :func:`register_meter` adds a meter that
passed to the registry; ``amiflow commission`` (amiflow_app.commands.ingest) also writes it as JSON under
AMIFLOW_DATA_DIR/commissioning/.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

import psycopg
from psycopg.types.json import Jsonb

from amiflow.db.registry import MeterRecord, add_meter, get_meter, update_meter
from amiflow.errors import AmiflowError
from amiflow.types import ReadingBatch
from amiflow.uri import MeterUri, parse_meter_uri
from ingest.meter_sessions import SessionFactory, open_session

__all__ = ["Check", "CommissioningReport", "commission", "plausibility", "register_meter", "store_report"]

NOMINAL_V = 230.0
VOLTAGES = ("1-0:32.7.0", "1-0:52.7.0", "1-0:72.7.0")
CURRENTS = ("1-0:31.7.0", "1-0:51.7.0", "1-0:71.7.0")
ENERGY = ("1-0:1.8.0", "1-0:2.8.0")


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: str  # "pass" | "fail" | "skip"
    detail: str


@dataclass(slots=True)
class CommissioningReport:
    uri: str
    meter: str | None
    started_at: str
    identity: dict[str, Any] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    clock_offset_s: float | None = None

    @property
    def passed(self) -> bool:
        return all(c.status != "fail" for c in self.checks) and any(c.name == "read" for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["passed"] = self.passed
        return out


def _values(batch: ReadingBatch) -> dict[str, float]:
    return {str(o): float(v) for o, v in zip(batch.obis, batch.value, strict=True)}


def plausibility(values: dict[str, float], second: dict[str, float], ct_ratio: float) -> list[Check]:
    """The value checks of a commissioning (pure)."""
    checks = []
    volts = [values[o] for o in VOLTAGES if o in values and values[o] > 0]
    if volts:
        bad = [v for v in volts if not 0.9 * NOMINAL_V <= v <= 1.1 * NOMINAL_V]
        text = ", ".join(f"{v:.1f} V" for v in volts)
        checks.append(
            Check(
                "voltage",
                "fail" if bad else "pass",
                f"{text} {'outside' if bad else 'within'} {0.9 * NOMINAL_V:.0f}-{1.1 * NOMINAL_V:.0f} V",
            )
        )
    else:
        checks.append(Check("voltage", "skip", "the meter reports no phase voltage"))
    amps = [values.get(c, 0.0) for c, v in zip(CURRENTS, VOLTAGES, strict=True) if v in values]
    if volts and "1-0:1.7.0" in values and any(amps):
        apparent = sum(values[v] * a for v, a in zip(VOLTAGES, amps, strict=False) if v in values)
        power = abs(values["1-0:1.7.0"]) - abs(values.get("1-0:2.7.0", 0.0))
        ok = abs(power) <= apparent * 1.05 + 5.0
        checks.append(
            Check(
                "power",
                "pass" if ok else "fail",
                f"|P| {abs(power):.0f} W {'<=' if ok else '>'} V*I {apparent:.0f} W (+5 %)",
            )
        )
    else:
        checks.append(Check("power", "skip", "needs voltage, current and active power"))
    regs = [o for o in ENERGY if o in values and o in second]
    if regs:
        down = [o for o in regs if second[o] < values[o]]
        checks.append(
            Check(
                "monotonic",
                "fail" if down else "pass",
                f"{', '.join(down)} decreased between two reads" if down else f"{', '.join(regs)} did not decrease",
            )
        )
    else:
        checks.append(Check("monotonic", "skip", "no energy register"))
    secondary = max(amps) / ct_ratio if amps and ct_ratio > 1 else None
    if not 1 <= ct_ratio <= 10_000:
        checks.append(Check("ct_ratio", "fail", f"CT ratio {ct_ratio:g} is outside 1..10000"))
    elif secondary is not None and secondary > 6.0:
        checks.append(Check("ct_ratio", "fail", f"secondary current {secondary:.1f} A exceeds a 5 A CT's range"))
    else:
        checks.append(Check("ct_ratio", "pass", f"CT ratio {ct_ratio:g}"))
    return checks


async def commission(
    uri: MeterUri,
    *,
    meter: str | None = None,
    sync_clock: bool = False,
    clock_tolerance_s: float = 10.0,
    timeout_s: float = 5.0,
    ct_ratio: float = 1.0,
    session_factory: SessionFactory = open_session,
    clock: Callable[[], float] = time.time,
    progress: TextIO | None = None,
) -> CommissioningReport:
    """Run the commissioning checks against the meter at ``uri``; raises nothing for a meter's fault."""
    name = meter or uri.params.get("meter") or (uri.host or uri.path or "meter")
    report = CommissioningReport(str(uri), meter, datetime.fromtimestamp(clock(), UTC).isoformat())

    def say(text: str) -> None:
        if progress is not None:
            print(f"  {text}", file=progress, flush=True)

    try:
        say(f"connecting to {uri} ...")
        async with session_factory(name, uri, timeout_s) as session:
            report.checks.append(Check("connect", "pass", "the meter answered"))
            say("identifying ...")
            report.identity = {k: v for k, v in (await session.identify()).items() if v is not None}
            serial = report.identity.get("serial")
            report.checks.append(
                Check(
                    "identify",
                    "pass" if serial else "fail",
                    f"serial {serial}" if serial else "no serial number reported",
                )
            )
            say("reading registers ...")
            first = _values(await session.read_registers(datetime.fromtimestamp(clock(), UTC)))
            report.values = first
            report.checks.append(Check("read", "pass" if first else "fail", f"{len(first)} values read"))
            await asyncio.sleep(1.0)
            second = _values(await session.read_registers(datetime.fromtimestamp(clock(), UTC)))
            say("checking the clock ...")
            meter_clock = await session.read_clock()
            if meter_clock is None:
                report.checks.append(Check("clock", "skip", "the meter keeps no clock"))
            else:
                offset = meter_clock.timestamp() - clock()
                report.clock_offset_s = round(offset, 3)
                within = abs(offset) <= clock_tolerance_s
                if not within and sync_clock:
                    await session.set_clock(datetime.fromtimestamp(clock(), UTC))
                    after = await session.read_clock()
                    offset_after = after.timestamp() - clock() if after else offset
                    within = abs(offset_after) <= clock_tolerance_s
                    report.checks.append(
                        Check(
                            "clock",
                            "pass" if within else "fail",
                            f"drift {offset:+.1f} s, set; now {offset_after:+.1f} s",
                        )
                    )
                else:
                    report.checks.append(
                        Check(
                            "clock",
                            "pass" if within else "fail",
                            f"drift {offset:+.1f} s (tolerance {clock_tolerance_s:g} s)",
                        )
                    )
        report.checks.extend(plausibility(first, second, ct_ratio))
    except AmiflowError as exc:
        stage = "connect" if not report.checks else "read"
        report.checks.append(Check(stage, "fail", f"{type(exc).__name__}: {exc}"))
    for check in report.checks:
        say(f"{check.status.upper():4} {check.name}: {check.detail}")
    return report


def store_report(conn: psycopg.Connection[Any], report: CommissioningReport, *, meter: str | None) -> None:
    """Keep ``report`` in ``amiflow.commissioning_reports`` (``meter``: the id it was commissioned as, if any)."""
    conn.execute(
        "INSERT INTO amiflow.commissioning_reports (uri, meter, passed, report) VALUES (%s, %s, %s, %s)",
        (report.uri, meter, report.passed, Jsonb(report.to_json())),
    )


def register_meter(
    conn: psycopg.Connection[Any],
    report: CommissioningReport,
    meter: str,
    *,
    timezone: str = "UTC",
    tariff: str | None = None,
    account: str | None = None,
    ct_ratio: float = 1.0,
) -> None:
    """Add the commissioned meter to the registry as ``meter``, or update it there (identity and report)."""
    ident = report.identity
    uri = parse_meter_uri(report.uri)
    fields: dict[str, Any] = {
        "serial": ident.get("serial"),
        "manufacturer": ident.get("manufacturer"),
        "model": ident.get("model"),
        "firmware": ident.get("firmware"),
        "commissioning": report.to_json(),
    }
    if get_meter(conn, meter) is None:
        add_meter(
            conn,
            MeterRecord(
                name=meter,
                protocol=uri.protocol,
                uri=report.uri,
                timezone=timezone,
                tariff=tariff,
                account=account,
                ct_ratio=ct_ratio,
                **{k: v for k, v in fields.items() if v is not None},
            ),
        )
    else:
        update_meter(conn, meter, uri=report.uri, tariff=tariff, **fields)
