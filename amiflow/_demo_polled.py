"""The polled part of ``amiflow demo``: simulated Modbus and IEC 62056-21 meters over TCP on loopback,
commissioned, registered and polled by the real poller through the simulated month. The simulators and the poller
share one simulated clock that the demo steps from interval boundary to interval boundary, so a month is polled in
about a minute rather than a month."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from tqdm import tqdm

from amiflow._demo_plan import DemoPlan, Summary, tariff_for
from amiflow.db.registry import MeterRecord, add_meter
from amiflow.uri import parse_meter_uri

__all__ = ["MODBUS_FAULTS", "MODBUS_METERS", "PolledMeter", "SimClock", "poll_month"]

MODBUS_METERS = 2
#: Per-request faults of the Modbus simulators (simulators/modbus.py): a poll that meets one retries, and a poll
#: whose retries fail too is a failed poll (its interval is derived again once two boundary reads line up).
MODBUS_FAULTS = "timeout=0.0005,corrupt=0.001,exception=0.001"
IEC_FAULTS = ("timeout", "bad_bcc", "noise")
IEC_FAULT_RATE = 0.003  # per readout session
POLL_OFFSET_S = 5.0  # seconds after each boundary the demo polls (the poller derives intervals near boundaries)


class SimClock:
    """A settable clock (epoch seconds) shared by the simulators and the poller."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True, slots=True)
class PolledMeter:
    """One simulated polled meter of the demo: its registry name, protocol, model and the running simulator."""

    name: str
    protocol: str
    manufacturer: str
    model: str
    sim: Any


def _simulators(parts: Sequence[str], seed: int, clock: SimClock) -> list[PolledMeter]:
    meters: list[PolledMeter] = []
    if "modbus" in parts:
        from simulators.modbus import ModbusSimulator

        for k in range(MODBUS_METERS):
            sim: Any = ModbusSimulator("tcp://127.0.0.1:0", map_name="sdm630", meter_index=900_000 + k, seed=seed,
                                  faults=MODBUS_FAULTS, clock=clock)  # fmt: skip
            meters.append(PolledMeter(f"MB{k + 1:05d}", "modbus", "Eastron (simulated)", "SDM630", sim))
    if "iec62056-21" in parts:
        from simulators.iec62056_21 import IecSimulator

        sim = IecSimulator("tcp://127.0.0.1:0", seed=seed, meter_index=910_000, faults=IEC_FAULTS,
                           fault_rate=IEC_FAULT_RATE, clock=clock)  # fmt: skip
        meters.append(PolledMeter("IE00001", "iec62056-21", "AMF (simulated)", "SIM-IEC1", sim))
    return meters


async def _register(conn: psycopg.Connection[Any], meters: list[PolledMeter], seed: int, clock: SimClock,
                    summary: Summary) -> None:  # fmt: skip
    from ingest.commission import commission
    from simulators.load import LoadModel

    model = LoadModel(seed)
    for m in meters:
        report = await commission(parse_meter_uri(m.sim.uri), meter=m.name, clock=clock, timeout_s=2.0)
        idx = m.sim.meter_index
        tariff = tariff_for(str(model.kind(idx)), bool(model.has_pv(np.array([idx]))[0]))
        summary.tariffs[tariff] = summary.tariffs.get(tariff, 0) + 1
        add_meter(
            conn,
            MeterRecord(
                name=m.name, protocol=m.protocol, uri=m.sim.uri, tariff=tariff, account=f"ACC-{m.name}",
                feeder="F1", manufacturer=m.manufacturer, model=m.model, commissioning=report.to_json(),
                status="active" if report.passed else "unverified",
            ),
        )  # fmt: skip
        summary.commissioning[m.name] = "passed" if report.passed else "failed"
        summary.meters_by_protocol[m.protocol] = summary.meters_by_protocol.get(m.protocol, 0) + 1


async def _poll_month(
    url: str, plan: DemoPlan, parts: Sequence[str], days: int, seed: int, summary: Summary, progress: bool
) -> None:
    from ingest._poll_store import PollStore
    from ingest.poller import Poller, PollerConfig

    start = int(plan.sim_start.timestamp()) + (plan.days - days) * 86_400
    clock = SimClock(start + POLL_OFFSET_S)
    meters = _simulators(parts, seed, clock)
    async with contextlib.AsyncExitStack() as stack:
        for m in meters:
            await m.sim.start()
            stack.push_async_callback(m.sim.stop)
        conn = stack.enter_context(psycopg.connect(url, autocommit=True))
        await _register(conn, meters, seed, clock, summary)
        cfg = PollerConfig(timeout_s=1.0, retries=1, retry_base_s=0.05, breaker_cooldown_s=3600.0)
        poller = Poller(PollStore(conn), cfg, clock=clock)
        rows = await poller.meters()
        steps = range(start, start + days * 86_400 + 1, cfg.interval_s)
        for boundary in tqdm(steps, desc="poll month", unit="interval", disable=not progress):
            clock.now = boundary + POLL_OFFSET_S
            await poller.poll_all(clock.now, rows)
        summary.polls_ok = poller.counters["ok"]
        summary.polls_failed = poller.counters["failed"]
        row = conn.execute(
            "SELECT count(*) FROM amiflow.readings r JOIN amiflow.meters m ON m.id = r.meter_id"
            " WHERE m.protocol = ANY(%s)",
            (list(parts),),
        ).fetchone()
        summary.polled_readings = int(row[0]) if row else 0


def poll_month(
    url: str, plan: DemoPlan, parts: Sequence[str], days: int, seed: int, summary: Summary, *, progress: bool
) -> float:
    """Commission, register and poll the simulated meters of ``parts`` (protocols: ``modbus``, ``iec62056-21``)
    through the last ``days`` days of the simulated span;
    returns the seconds it took. pymodbus's own error log (the last frames of every injected fault) is kept off
    the terminal meanwhile: the poller counts and logs failed polls itself."""
    t0 = time.perf_counter()
    pymodbus_log = logging.getLogger("pymodbus")
    level = pymodbus_log.level
    pymodbus_log.setLevel(logging.CRITICAL)
    try:
        asyncio.run(_poll_month(url, plan, parts, min(days, plan.days), seed, summary, progress))
    finally:
        pymodbus_log.setLevel(level)
    summary.polled_days = min(days, plan.days)
    return time.perf_counter() - t0
