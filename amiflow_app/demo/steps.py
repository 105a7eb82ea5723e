"""The steps of ``amiflow demo`` that talk to the database, the broker and the simulators
(:mod:`amiflow_app.demo.run` runs them in order and cleans up). Each step fills the
:class:`~amiflow_app.demo.plan.Summary` with what it measured."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from tqdm import tqdm

import rating
from amiflow.db.registry import AccountAssignment, MeterRecord, add_meter, assign_account
from amiflow.errors import AmiflowError
from amiflow_app.demo.plan import DemoPlan, Summary, collector_for, region_for, tariff_for

__all__ = [
    "FLEET_FAULTS",
    "deliver",
    "import_tariffs",
    "ingest_month",
    "register_fleet",
    "run_bills",
    "scalar",
]

log = logging.getLogger(__name__)

#: Faults the simulated month carries (simulators/faults.py): every kind a head-end must survive.
FLEET_FAULTS = "dup=0.01,reorder=0.01,gap=0.002,malformed=0.005,spike=0.0005,drift=0.01,rollover=0.001,spoof=0.003"
#: Without a terminal (a pipe, a CI log) progress is a plain line this often instead of a bar.
PLAIN_PROGRESS_S = 15.0
TARIFF_DIR = Path(rating.__file__).resolve().parent / "tariffs"


def scalar(conn: psycopg.Connection[Any], sql: str, params: Any = None) -> Any:
    """The first column of the first row (None when there is no row)."""
    row = conn.execute(sql, params).fetchone()
    return None if row is None else row[0]


def import_tariffs(conn: psycopg.Connection[Any]) -> list[str]:
    """Import the example tariffs in rating/tariffs/ as ``amiflow tariffs import`` does; returns their ids."""
    from rating.compile import compile_tariff
    from rating.tariff_files import load_tariff
    from rating.tariff_store import store_tariff

    ids = []
    for path in sorted(TARIFF_DIR.iterdir()):
        if path.suffix not in (".toml", ".json"):
            continue
        for spec in load_tariff(path):
            compile_tariff(spec)
            store_tariff(conn, spec)
            ids.append(spec.id)
    return ids


def register_fleet(conn: psycopg.Connection[Any], config: Any, summary: Summary) -> None:
    """Register the fleet's meters with accounts, feeders and the tariff their load model calls for; each account
    gets its region and collector."""
    from simulators.load import LoadModel

    model = LoadModel(config.seed, pv_share=config.pv_share, commercial_share=config.commercial_share)
    idx = np.arange(config.meters)
    kinds = model.kind(idx)
    pv = model.has_pv(idx)
    for i in range(config.meters):
        tariff = tariff_for(str(kinds[i]), bool(pv[i]))
        summary.tariffs[tariff] = summary.tariffs.get(tariff, 0) + 1
        add_meter(
            conn,
            MeterRecord(
                name=config.meter_name(i),
                protocol="mqtt",
                tariff=tariff,
                account=f"ACC-{i + 1:06d}",
                feeder=f"F{i % 4 + 1}",
                manufacturer="amiflow-sim",
                model=str(kinds[i]) + (" PV" if pv[i] else ""),
            ),
        )
        assign_account(conn, AccountAssignment(f"ACC-{i + 1:06d}", region_for(i), collector_for(i)))
    summary.meters_by_protocol["mqtt"] = summary.meters_by_protocol.get("mqtt", 0) + config.meters


class FleetRun:
    """The MQTT fleet simulator in a thread (``run()`` blocks there); ``stop()`` drains and disconnects it."""

    def __init__(self, config: Any, mqtt_url: str) -> None:
        from simulators.mqtt_fleet import MqttFleet

        self.fleet = MqttFleet(config, mqtt_url)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="demo-fleet", daemon=True)

    def _run(self) -> None:
        try:
            self.fleet.run()
        except BaseException as exc:  # reported by join()
            self.error = exc

    def start(self) -> FleetRun:
        """Start publishing in the background."""
        self._thread.start()
        return self

    def alive(self) -> bool:
        """Whether the fleet is still publishing."""
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> Any:
        """Wait for the end of the run; its FleetStats."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AmiflowError("the fleet simulator did not finish in time")
        if self.error is not None:
            raise AmiflowError(f"the fleet simulator failed: {self.error}") from self.error
        return self.fleet.stats

    def stop(self) -> None:
        """Stop generating, drain, go offline (idempotent)."""
        if self._thread.is_alive():
            self.fleet.stop()
            self._thread.join(40)


def wait_settled(worker: Any, messages: int, timeout_s: float) -> None:
    """Wait until the ingest worker has received ``messages`` messages and stored everything it received."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        m = worker.metrics
        if m.messages_received >= messages and m.queue_depth == 0:
            time.sleep(0.3)  # the last batch's commit
            return
        time.sleep(0.05)
    raise AmiflowError(f"ingest did not settle: {worker.metrics.messages_received} of {messages} messages received")


def ingest_month(
    worker: Any, config: Any, mqtt_url: str, register: Callable[[FleetRun], None], *, progress: bool
) -> Any:
    """Publish the simulated month through the broker into the running ingest worker; returns the FleetStats."""
    run = FleetRun(config, mqtt_url)
    register(run)
    run.start()
    per_meter = -(-config.intervals // config.per_message)
    total = config.meters * per_meter
    started = last_line = time.monotonic()
    with tqdm(total=total, desc="ingest month", unit="msg", disable=not progress) as bar:
        while run.alive():
            bar.n = min(bar.total, worker.metrics.messages_received)
            bar.refresh()
            time.sleep(0.2)
            if not progress and time.monotonic() - last_line >= PLAIN_PROGRESS_S:  # a log or a pipe: plain lines
                last_line = time.monotonic()
                done = min(total, worker.metrics.messages_received)
                print(f"      ingest month: {done / max(1, total):.0%} ({done} of {total} messages,"
                      f" {done / (last_line - started):.0f} msg/s)", flush=True)  # fmt: skip
        stats = run.join()
        wait_settled(worker, stats.messages, 60)
        bar.n = bar.total
        bar.refresh()
    return stats


def run_bills(url: str, plan: DemoPlan, summary: Summary, *, progress: bool) -> None:
    """VEE and the billing run of the month (in this process), into the summary."""
    from rating.billing_run import RunOptions, run_billing

    result = run_billing(url, RunOptions(period=plan.period, workers=0, progress=progress))
    s = result.summary
    summary.meters_billed = int(s["meters_billed"])
    summary.bills_skipped = {k: int(v) for k, v in s["skipped"].items()}
    summary.estimated_share = float(s["estimated_share"])
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT currency, count(*), sum(total) FROM amiflow.v_bills WHERE status = 'issued'"
            " AND period_start = %s GROUP BY currency",
            (plan.period,),
        ).fetchall()
    summary.bills_issued = sum(int(r[1]) for r in rows)
    summary.bills_total = {r[0]: str(Decimal(r[2]).quantize(Decimal("0.01"))) for r in rows}


def deliver(url: str, billing_url: str, secret: bytes, summary: Summary) -> None:
    """Deliver everything pending in the outbox (bills, notices) to the billing receiver."""
    from billing_bridge.dispatcher import DispatchConfig, Dispatcher
    from billing_bridge.sinks import WebhookSink

    dispatcher = Dispatcher(
        url, WebhookSink(billing_url, secret, concurrency=16), DispatchConfig(follow=False, max_wait_s=5.0)
    )
    stats = asyncio.run(dispatcher.run())
    summary.deliveries += stats.delivered
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT kind, count(*) FROM amiflow.outbox WHERE state = 'delivered' GROUP BY kind")
        summary.deliveries_by_kind = {str(k): int(n) for k, n in rows.fetchall()}
    left = stats.remaining
    if left is not None and left.pending:
        log.warning("bridge: %s outbox items still pending after the delivery run", left.pending)


def utc(dt: datetime) -> str:
    """A timeline stamp: ``2026-11-16 16:00Z``."""
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ")


def day_at(d: Any, hour: int) -> datetime:
    """``hour`` o'clock UTC on date ``d``."""
    return datetime(d.year, d.month, d.day, hour, tzinfo=UTC)


def days_between(first: Any, last: Any) -> list[Any]:
    """Dates from ``first`` to ``last`` inclusive."""
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]
