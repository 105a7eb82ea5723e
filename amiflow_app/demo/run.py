"""``amiflow demo``: the whole head-end on one machine in a few minutes.

Starts the embedded PostgreSQL (unless AMIFLOW_DATABASE_URL is set), an MQTT broker (a mosquitto child process when
one is on PATH, else amqtt in-process; or the broker of AMIFLOW_MQTT_URL) and a local billing receiver; registers a
simulated MQTT fleet with residential and commercial tariffs; ingests a simulated month with faults through the real
ingest worker; runs VEE and the billing run; delivers bills to the receiver; takes one account through reminders,
disconnect and reconnect; writes the report and ``summary.json`` to ``--out`` and prints a summary. Everything it
started is stopped on the way out, also on Ctrl-C, SIGTERM or an error.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import secrets
import shutil
import sys
import time
import uuid
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from amiflow.errors import ConfigError
from amiflow.settings import Settings
from amiflow_app.demo.collect import run_collections
from amiflow_app.demo.plan import DemoPlan, Summary, plan_demo
from amiflow_app.demo.steps import (
    FLEET_FAULTS,
    FleetRun,
    deliver,
    import_tariffs,
    ingest_month,
    register_fleet,
    run_bills,
    scalar,
)

__all__ = ["POLLED_PARTS", "QUICK_POLL_DAYS", "run_demo"]

log = logging.getLogger(__name__)

#: --quick polls the polled meters through the month's last 2 days only: their bills are then skipped as
#: too_much_estimated, which the summary shows (CI time goes to the MQTT month instead).
QUICK_POLL_DAYS = 2

#: What each polled part of the demo needs; a part whose modules are missing is reported, not faked.
POLLED_PARTS = {
    "modbus": ("simulators.modbus", "protocols.modbus"),
    "iec62056-21": ("simulators.iec62056_21", "protocols.iec62056_21"),
    "dlms": ("simulators.dlms", "protocols.dlms"),
    "mbus": ("simulators.mbus_meter", "protocols.mbus", "ingest.mbus_keys"),
    "sml": ("simulators.sml_meter", "protocols.sml", "ingest.push_reader"),
}


def _step(n: int, text: str) -> None:
    print(f"[{n}/7] {text}", flush=True)


class _KnownNoiseFilter(logging.Filter):
    """Tracebacks third-party libraries log on the asyncio logger for faults the demo injects on purpose and the
    head-end handles: amqtt refusing the ingest worker's MQTT 5 CONNECT (the worker falls back to 3.1.1 and says
    so), and pymodbus failing to decode a garbled frame from the Modbus simulator's ``corrupt`` fault (the poller
    retries; the summary counts the injected faults)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Unhandled exception in client_connected_cb"):
            return False
        exc = record.exc_info[1] if record.exc_info else None
        return not (message.startswith("Fatal error: protocol.data_received()") and "Modbus" in type(exc).__name__)


def _missing(modules: tuple[str, ...]) -> list[str]:
    missing = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(name)
    return missing


def _stop_all(fleets: list[FleetRun]) -> None:
    for fleet in fleets:
        fleet.stop()


def _mqtt_totals(summary: Summary, worker: Any, fleet_stats: list[Any]) -> None:
    m = worker.metrics.snapshot()
    summary.readings_published = sum(s.readings_published for s in fleet_stats)
    summary.messages_quarantined = sum(s.messages_quarantined for s in fleet_stats)
    summary.readings_stored = int(m["readings_stored"])
    summary.readings_duplicate = int(m["readings_duplicate"]) + int(m["readings_conflict"])
    summary.readings_quarantined = int(sum(m["quarantined_readings"].values()))
    faults: dict[str, int] = {}
    for s in fleet_stats:
        for k, v in s.faults.items():
            faults[k] = faults.get(k, 0) + int(v)
    summary.faults = faults


def _bill_documents(conn: psycopg.Connection[Any], folder: Path, plan: DemoPlan, settings: Settings) -> int:
    """``bills/``: the month's bills as customer PDFs with index.json (CONTRACT.md); the number written."""
    from billing_bridge.customer.documents import render_month
    from billing_bridge.customer.documents_data import DocumentOptions
    from billing_bridge.customer.usage import UsageNotFound
    from billing_bridge.policy import load_ruleset

    ruleset = load_ruleset(settings.disconnect_ruleset)
    try:
        written = render_month(conn, plan.period, folder, options=DocumentOptions(ruleset.payment_terms_days, ruleset))
    except UsageNotFound:  # every meter skipped: no bill to render
        return 0
    return len(written)


def run_demo(
    settings: Settings,
    *,
    meters: int,
    days: int,
    out: Path,
    seed: int,
    poll_days: int = 31,
    today: datetime | None = None,
) -> Summary:
    """Run the demo; returns its summary (also written to ``out/summary.json``). Raises AmiflowError on failure.

    ``poll_days``: the polled meters are polled through the last ``poll_days`` of the simulated days (polling steps
    a simulated clock through every interval boundary, ~10 ms per meter and boundary here).
    """
    from amiflow.db import open_database
    from billing_bridge.receiver import Receiver, ReceiverConfig
    from ingest.mqtt_worker import IngestWorker
    from simulators.fleet_config import FleetConfig

    started = time.perf_counter()
    if meters < 2:
        raise ConfigError(f"--meters {meters}: the demo needs at least 2 MQTT meters")
    today_d = (today or datetime.now(UTC)).date()
    plan = plan_demo(today_d, days)
    summary = Summary(period=plan.period_text, simulated_days=plan.days)
    out.mkdir(parents=True, exist_ok=True)
    run_tag = uuid.uuid4().hex[:8]
    progress = sys.stderr.isatty()
    fleets: list[FleetRun] = []
    with contextlib.ExitStack() as stack:
        quiet = _KnownNoiseFilter()
        logging.getLogger("asyncio").addFilter(quiet)
        stack.callback(logging.getLogger("asyncio").removeFilter, quiet)
        _step(1, "starting PostgreSQL, the MQTT broker and the billing receiver")
        if settings.database_url is None and (out / "data").exists():
            print(f"      removing the previous demo's data in {out / 'data'}", flush=True)
            shutil.rmtree(out / "data")
        with warnings.catch_warnings():  # pgserver's platformdirs warns when XDG_RUNTIME_DIR is unset (containers)
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
            db = open_database(settings.model_copy(update={"data_dir": out / "data"}))
        stack.callback(db.close)
        if settings.mqtt_url:
            mqtt_url, prefix, summary.broker = settings.mqtt_url, f"amiflow-demo-{run_tag}/ami/v1", "external"
        else:
            from amiflow_app.broker import EmbeddedBroker

            broker = EmbeddedBroker()
            broker.start()
            stack.callback(broker.stop)
            mqtt_url, prefix = broker.url, "ami/v1"
            summary.broker = f"embedded {broker.engine}"
        secret = secrets.token_hex(16).encode()
        receiver = Receiver(ReceiverConfig(secret=secret)).start()
        stack.callback(receiver.stop)
        worker_settings = settings.model_copy(
            update={"mqtt_url": mqtt_url, "data_dir": out / "data", "mqtt_client_id": f"demo-ingest-{run_tag}",
                    "mqtt_share_group": f"demo{run_tag}", "ingest_batch_max_latency_s": 0.2}
        )  # fmt: skip
        worker = IngestWorker(worker_settings, db.url, prefix=prefix)
        worker.start()
        stack.callback(worker.stop)
        stack.callback(_stop_all, fleets)  # LIFO: the simulators stop first, then the worker drains

        _step(2, f"registering {meters} MQTT meters and importing the example tariffs")
        config = FleetConfig(meters=meters, start=plan.sim_start, days=plan.days, seed=seed, faults=FLEET_FAULTS,
                             prefix=prefix, per_message=96, client_id=f"demo-fleet-{run_tag}")  # fmt: skip
        with psycopg.connect(db.url, autocommit=True) as conn:
            if scalar(conn, "SELECT count(*) FROM amiflow.meters"):
                raise ConfigError(
                    "the database of AMIFLOW_DATABASE_URL already holds meters: the demo needs an empty database"
                )
            import_tariffs(conn)
            register_fleet(conn, config, summary)
        parts = []
        for part, modules in POLLED_PARTS.items():
            if missing := _missing(modules):
                summary.not_built.append(f"polled {part} meters: {', '.join(missing)} not in this build")
            else:
                parts.append(part)

        _step(3, f"ingesting {plan.days} simulated days of {plan.period_text} with faults ({FLEET_FAULTS})")
        poll = None
        if parts:
            from amiflow_app.demo.polled import PollThread

            n = min(poll_days, plan.days)
            print(f"      meanwhile: commissioning and polling the {' and '.join(parts)} simulators through {n} days"
                  " on a simulated clock", flush=True)  # fmt: skip
            poll = PollThread(db.url, plan, parts, n, seed, summary, progress=progress).start()
            stack.callback(poll.stop)
        fleet_stats = [ingest_month(worker, config, mqtt_url, fleets.append, progress=progress)]
        if poll is not None:
            poll.join()

        _step(4, f"VEE and the billing run for {plan.period_text}; delivering bills to {receiver.url}")
        run_bills(db.url, plan, summary, progress=progress)
        deliver(db.url, receiver.url, secret, summary)

        _step(5, "collections: payments, reminders, the disconnect policy, disconnect and reconnect over MQTT")
        acct = run_collections(db.url, mqtt_url, config, worker, plan, today_d, summary, fleets.append)
        if acct is not None:
            fleet_stats.append(acct)
        deliver(db.url, receiver.url, secret, summary)
        _mqtt_totals(summary, worker, fleet_stats)
        summary.receiver_received = len(receiver.snapshot().deliveries)

        _step(6, "writing the report, the collection KPIs, the bill PDFs and the billed meters' Green Button files")
        from amiflow_app.demo.collect import write_collection
        from amiflow_app.report import build_report
        from billing_bridge.customer import write_greenbutton_files

        with psycopg.connect(db.url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT payload->>'type', count(*) FROM amiflow.outbox WHERE kind = 'notice' GROUP BY 1"
            ).fetchall()
            summary.notices = {str(t): int(n) for t, n in rows}
            summary.report = str(build_report(conn, plan.period_text, out, account=summary.account or None))
            summary.greenbutton_files = write_greenbutton_files(conn, out, plan.period, plan.period_end)
            summary.bill_documents = _bill_documents(conn, out / "bills", plan, settings)
            write_collection(conn, plan, out, summary)
        _step(7, "stopping everything")
    summary.elapsed_s = round(time.perf_counter() - started, 1)
    (out / "summary.json").write_text(json.dumps(summary.to_json(), indent=2, default=str) + "\n", encoding="utf-8")
    return summary
