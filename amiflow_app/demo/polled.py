"""The polled part of ``amiflow demo``: simulated Modbus, IEC 62056-21, DLMS and M-Bus meters over TCP on loopback,
commissioned, registered and polled by the real poller through the simulated month. The M-Bus segment (one TCP
gateway) holds a heat and a water meter that encrypt their telegrams (OMS mode 5): their keys go to the registry,
the poller decrypts with them, and they are billed per MWh of heat and per m3 of water. The simulators and the poller
share one simulated clock that the demo steps from interval boundary to interval boundary, so a month is polled in
about a minute rather than a month."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
from tqdm import tqdm

from amiflow.db.registry import MeterRecord, add_meter
from amiflow.errors import AmiflowError
from amiflow.uri import parse_meter_uri
from amiflow_app.demo.plan import DemoPlan, Summary, tariff_for

__all__ = ["MODBUS_FAULTS", "MODBUS_METERS", "PollThread", "PolledMeter", "SimClock", "poll_month"]

MODBUS_METERS = 2
#: Per-request faults of the Modbus simulators (simulators/modbus.py): a poll that meets one retries, and a poll
#: whose retries fail too is a failed poll (its interval is derived again once two boundary reads line up).
MODBUS_FAULTS = "timeout=0.0002,corrupt=0.001,exception=0.001"
DLMS_METERS = 2
DLMS_FAULTS = "timeout=0.002,bad_crc=0.002,exception=0.001"
#: DLMS meters keep a load profile: the poller reads it every 6 simulated hours (from the last stored interval),
#: as a head-end polls profile meters a few times a day; meters without a profile are read at every boundary.
PROFILE_POLL_S = 6 * 3600
IEC_FAULTS = ("timeout", "bad_bcc", "noise")
IEC_FAULT_RATE = 0.003  # per readout session
#: the M-Bus segment: KIND:ADDRESS:IDENT, each billed on its own tariff (rating/tariffs/)
MBUS_DEVICES = "heat:1:61000001,water:2:61000002"
MBUS_TARIFFS = {"heat": "heat-mwh", "water": "water-m3"}
MBUS_FAULTS = ("bad_checksum", "timeout")
MBUS_FAULT_RATE = 0.0005
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
    meter_index: int  # in the shared load model
    sim: Any
    uri: str | None = None  # meters sharing a simulator (a bus): "{uri}?address=N" ({uri}: the sim's), else None
    tariff: str | None = None  # else from the load model's kind
    key: bytes | None = None  # an M-Bus meter's AES key (it encrypts)


def _simulators(parts: Sequence[str], seed: int, clock: SimClock, start: datetime) -> list[PolledMeter]:
    meters: list[PolledMeter] = []
    if "modbus" in parts:
        from simulators.modbus import ModbusSimulator

        for k in range(MODBUS_METERS):
            sim: Any = ModbusSimulator("tcp://127.0.0.1:0", map_name="sdm630", meter_index=900_000 + k, seed=seed,
                                  faults=MODBUS_FAULTS, clock=clock)  # fmt: skip
            meters.append(PolledMeter(f"MB{k + 1:05d}", "modbus", "Eastron (simulated)", "SDM630", 900_000 + k, sim))
    if "iec62056-21" in parts:
        from simulators.iec62056_21 import IecSimulator

        sim = IecSimulator("tcp://127.0.0.1:0", seed=seed, meter_index=910_000, faults=IEC_FAULTS,
                           fault_rate=IEC_FAULT_RATE, clock=clock)  # fmt: skip
        meters.append(PolledMeter("IE00001", "iec62056-21", "AMF (simulated)", "SIM-IEC1", 910_000, sim))
    if "dlms" in parts:
        from simulators.dlms import DlmsSimulator

        for k in range(DLMS_METERS):
            sim = DlmsSimulator("tcp://127.0.0.1:0", seed=seed, meter_index=920_000 + k, start=start,
                                faults=DLMS_FAULTS, clock=clock)  # fmt: skip
            meters.append(PolledMeter(f"DL{k + 1:05d}", "dlms", "amiflow (simulated)", "SIM-DLMS", 920_000 + k, sim))
    if "mbus" in parts:  # one gateway, two encrypting meters on the bus behind it
        from simulators.mbus_meter import MbusBusSimulator

        bus = MbusBusSimulator("tcp://127.0.0.1:0", devices=MBUS_DEVICES, seed=seed, clock=clock, encrypt=True,
                               faults=MBUS_FAULTS, fault_rate=MBUS_FAULT_RATE)  # fmt: skip
        for k, slave in enumerate(bus.slaves):
            same = sum(1 for other in bus.slaves[: k + 1] if other.kind == slave.kind)
            name = f"{'HM' if slave.kind == 'heat' else 'WM'}{same:05d}"
            maker = {"heat": "Kamstrup-like", "water": "Itron-like"}[slave.kind]
            meters.append(PolledMeter(name, "mbus", f"{maker} {slave.manufacturer} (simulated)", f"M-Bus {slave.kind}",
                                      930_000 + k, bus, tariff=MBUS_TARIFFS[slave.kind], key=slave.key,
                                      uri=f"{{uri}}?address={slave.address}"))  # fmt: skip
    if "sml" in parts:  # a push meter: registered under its nameplate id without spaces, read, not polled
        from amiflow_app.demo.pushed import SML_METER_INDEX, sml_simulator

        sim = sml_simulator(seed, clock.now)
        name = sim.meter.meter_id.replace(" ", "")
        meters.append(PolledMeter(name, "sml", "EMH (simulated)", "eHZ (SML push)", SML_METER_INDEX, sim))
    return meters


def _uri(m: PolledMeter) -> str:
    return m.uri.replace("{uri}", str(m.sim.uri)) if m.uri else str(m.sim.uri)


def _one_per_sim(meters: Sequence[PolledMeter]) -> list[PolledMeter]:
    """One meter of each simulator, in the order the simulators first appear (the meters of a bus share one)."""
    return list({id(m.sim): m for m in meters}.values())


async def _register(conn: psycopg.Connection[Any], meters: list[PolledMeter], seed: int, clock: SimClock,
                    summary: Summary) -> None:  # fmt: skip
    from amiflow.db.meter_keys import MeterKey, set_meter_key
    from ingest.commissioning import commission
    from ingest.mbus_keys import key_sessions
    from ingest.meter_sessions import open_session
    from simulators.load import LoadModel

    model = LoadModel(seed)
    for m in meters:
        uri = _uri(m)
        key = MeterKey(m.key) if m.key is not None else None
        sessions = open_session if key is None else key_sessions(key)
        report = None  # SML meters have no commissioning session yet: registered as found
        if m.protocol != "sml":
            report = await commission(parse_meter_uri(uri), meter=m.name, clock=clock, timeout_s=2.0,
                                      session_factory=sessions)  # fmt: skip
        idx = m.meter_index
        tariff = m.tariff or tariff_for(str(model.kind(idx)), bool(model.has_pv(np.array([idx]))[0]))
        summary.tariffs[tariff] = summary.tariffs.get(tariff, 0) + 1
        add_meter(
            conn,
            MeterRecord(
                name=m.name, protocol=m.protocol, uri=uri, tariff=tariff, account=f"ACC-{m.name}",
                feeder="F1", manufacturer=m.manufacturer, model=m.model,
                commissioning=report.to_json() if report else None,
                status="active" if report is None or report.passed else "unverified",
            ),
        )  # fmt: skip
        if key is not None:
            set_meter_key(conn, m.name, key)
        if report is not None:
            summary.commissioning[m.name] = "passed" if report.passed else "failed"
        summary.meters_by_protocol[m.protocol] = summary.meters_by_protocol.get(m.protocol, 0) + 1


async def _poll_month(
    url: str,
    plan: DemoPlan,
    parts: Sequence[str],
    days: int,
    seed: int,
    summary: Summary,
    progress: bool,
    stop: threading.Event,
) -> None:
    from ingest.mbus_keys import registry_sessions
    from ingest.poll_store import PollStore
    from ingest.poller import Poller, PollerConfig

    start = int(plan.sim_start.timestamp()) + (plan.days - days) * 86_400
    clock = SimClock(start + POLL_OFFSET_S)
    # The DLMS meters were installed a day before polling begins, so their profile is never empty when first read
    # (protocols.dlms read_profile fails with an IndexError on an empty range: reported to its owner).
    meters = _simulators(parts, seed, clock, datetime.fromtimestamp(start - 86_400, UTC))
    async with contextlib.AsyncExitStack() as stack:
        for m in _one_per_sim(meters):
            await m.sim.start()
            stack.push_async_callback(m.sim.stop)
        conn = stack.enter_context(psycopg.connect(url, autocommit=True))
        await _register(conn, meters, seed, clock, summary)
        cfg = PollerConfig(timeout_s=0.5, retries=1, retry_base_s=0.05, breaker_cooldown_s=3600.0)
        # One poller (and database connection) per meter: their database round trips overlap, as the separate
        # buses of a real deployment would; the meters are on separate simulated links anyway.
        rows = PollStore(conn).meters()
        pollers: list[tuple[Any, list[Any]]] = []
        profile_pollers: list[tuple[Any, list[Any]]] = []
        sessions = registry_sessions(url)  # M-Bus meters decrypt with their keys from the registry
        on_bus = [r for r in rows if r.protocol == "mbus"]  # one bus: one poller, one request at a time on it
        for group in [[r] for r in rows if r.protocol != "mbus"] + ([on_bus] if on_bus else []):
            own = stack.enter_context(psycopg.connect(url, autocommit=True))
            (profile_pollers if group[0].protocol == "dlms" else pollers).append(
                (Poller(PollStore(own), cfg, clock=clock, session_factory=sessions), group)
            )
        from amiflow_app.demo.pushed import PushedMeter

        pushed = [PushedMeter(m.sim, url, cfg.interval_s) for m in meters if m.protocol == "sml"]
        for p in pushed:
            await p.start()
            stack.push_async_callback(p.stop)
        steps = range(start, start + days * 86_400 + 1, cfg.interval_s)
        for boundary in tqdm(steps, desc="poll month", unit="interval", disable=not progress, position=1):
            if stop.is_set():
                break
            clock.now = boundary + POLL_OFFSET_S
            due = pollers + (profile_pollers if (boundary - start) % PROFILE_POLL_S == 0 else [])
            await asyncio.gather(*(p.poll_all(clock.now, r) for p, r in due), *(m.step(clock.now) for m in pushed))
        for m in _one_per_sim(meters):
            injected = getattr(m.sim, "injected", None) or getattr(m.sim, "faults_injected", {})
            for kind, n in injected.items():
                key = f"{m.protocol}:{kind}"
                summary.poll_faults[key] = summary.poll_faults.get(key, 0) + int(n)
        summary.polls_ok = sum(p.counters["ok"] for p, _ in pollers + profile_pollers)
        summary.polls_failed = sum(p.counters["failed"] for p, _ in pollers + profile_pollers)
        stored = conn.execute(
            "SELECT count(*) FROM amiflow.readings r JOIN amiflow.meters m ON m.id = r.meter_id"
            " WHERE m.protocol = ANY(%s)",
            (list(parts),),
        ).fetchone()
        summary.polled_readings = int(stored[0]) if stored else 0


async def _until_stopped(work: Coroutine[Any, Any, None], stop: threading.Event) -> None:
    """Run ``work``, cancelled as soon as ``stop`` is set: Ctrl-C in the middle of commissioning (seconds of
    timeouts with the faults) or of a boundary's polls stops at once, the simulators shut down on the way out."""
    task = asyncio.create_task(work)
    while not task.done() and not stop.is_set():
        await asyncio.wait({task}, timeout=0.1)
    if not task.done():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def poll_month(
    url: str,
    plan: DemoPlan,
    parts: Sequence[str],
    days: int,
    seed: int,
    summary: Summary,
    *,
    progress: bool,
    stop: threading.Event | None = None,
) -> float:
    """Commission, register and poll the simulated meters of ``parts`` (``modbus``, ``iec62056-21``, ``dlms``, ``mbus``;
    ``sml``: a push meter, registered and read) through the last ``days`` days of the simulated span;
    returns the seconds it took. pymodbus's own error log (the last frames of every injected fault) is kept off
    the terminal meanwhile: the poller counts and logs failed polls itself. ``stop`` ends the polling early."""
    t0 = time.perf_counter()
    pymodbus_log = logging.getLogger("pymodbus")
    level = pymodbus_log.level
    pymodbus_log.setLevel(logging.CRITICAL)
    try:
        n = min(days, plan.days)
        stop = stop or threading.Event()
        asyncio.run(_until_stopped(_poll_month(url, plan, parts, n, seed, summary, progress, stop), stop))
    finally:
        pymodbus_log.setLevel(level)
    summary.polled_days = min(days, plan.days)
    return time.perf_counter() - t0


class PollThread:
    """:func:`poll_month` in a thread of its own (its own event loop), so polling runs while the MQTT month is
    ingested, as in a head-end; ``join()`` re-raises its failure, ``stop()`` ends it at the next boundary."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self.seconds = 0.0
        self._thread = threading.Thread(target=self._run, args=args, kwargs=kwargs, name="demo-poll", daemon=True)

    def _run(self, *args: Any, **kwargs: Any) -> None:
        try:
            self.seconds = poll_month(*args, **kwargs, stop=self._stop)
        except BaseException as exc:  # re-raised by join()
            self.error = exc

    def start(self) -> PollThread:
        """Start polling."""
        self._thread.start()
        return self

    def join(self) -> None:
        """Wait for the end of the polling; raise what it raised."""
        self._thread.join()
        if self.error is not None:
            raise AmiflowError(f"demo: polling failed: {self.error}") from self.error

    def stop(self) -> None:
        """Stop at the next boundary and wait (idempotent)."""
        self._stop.set()
        self._thread.join(30)
