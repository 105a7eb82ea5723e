"""``amiflow ingest mqtt``, ``amiflow poll`` and ``amiflow commission``: the acquisition commands.

Argument parsing, signals and printing only; the work is done by :class:`ingest.IngestWorker`, :class:`ingest.Poller`
and :func:`ingest.commission`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from amiflow.db import Database, open_database
from amiflow.db.migrate import migrate
from amiflow.errors import ConfigError, StorageError
from amiflow.settings import Settings
from amiflow.uri import parse_meter_uri
from amiflow_app.command import Command
from ingest import (
    CommissioningReport,
    IngestWorker,
    MetricsServer,
    Poller,
    PollerConfig,
    PollStore,
    PollSummary,
    commission,
    register_meter,
    store_report,
)

__all__ = ["COMMISSION", "INGEST_MQTT", "POLL"]

log = logging.getLogger(__name__)


# -- ingest mqtt: one MQTT ingest worker (run several with distinct client ids: they share the stream) ---------------
def _ingest_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--client-id", help="MQTT client id (default AMIFLOW_MQTT_CLIENT_ID); unique per worker")
    p.add_argument("--prefix", help="topic prefix (default AMIFLOW_MQTT_TOPIC_PREFIX, ami/v1)")
    p.add_argument(
        "--http-port",
        type=int,
        help="serve /health and /metrics on this port (0 = none, the default unless AMIFLOW_HTTP_PORT is set:"
        " several workers on one host must not fight over one port)",
    )


def _database(settings: Settings) -> tuple[Database, Callable[[], None] | None]:
    """The migrated database; or, when it cannot be reached now, the database and the migration to run once it
    answers (a worker restarted during an outage must start and spool, not exit)."""
    try:
        return open_database(settings), None
    except StorageError as exc:
        if not isinstance(exc.__cause__, psycopg.OperationalError):
            raise
        log.warning("%s; starting anyway: spooling until the database answers, migrating then", exc)
    db = open_database(settings, apply_migrations=False)

    def prepare() -> None:
        migrate(db.url, chunk_interval=settings.chunk_interval, compress_after=settings.compress_after,
                partitions_ahead=settings.partitions_ahead)  # fmt: skip

    return db, prepare


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    changes: dict[str, Any] = {}
    if args.client_id:
        changes["mqtt_client_id"] = args.client_id
    if args.http_port is not None:
        changes["http_port"] = args.http_port
    elif "http_port" not in settings.model_fields_set:
        changes["http_port"] = 0  # AMIFLOW_HTTP_PORT's default belongs to `amiflow serve`'s API, not to each worker
    if changes:
        settings = settings.model_copy(update=changes)
    db, prepare = _database(settings)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        log.info("signal %d: draining, committing, acknowledging, disconnecting", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    worker = IngestWorker(settings, db.url, prefix=args.prefix or settings.mqtt_topic_prefix, prepare_db=prepare)
    server = None
    if settings.http_port:
        server = MetricsServer(worker.metrics, settings.http_host, settings.http_port)
        server.start()
    try:
        worker.run(stop)
    finally:
        if server is not None:
            server.stop()
        db.close()
    return 0


# -- poll: the polling scheduler, or one round of it with --once -----------------------------------------------------
def _poll_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--once", action="store_true", help="poll every meter once now, print a summary, exit")
    parser.add_argument("--sync-clock", action="store_true", help="set meter clocks that drift beyond tolerance")
    parser.add_argument("--meter", action="append", help="only these meters (repeatable)")


def _print_summary(summary: PollSummary) -> None:
    for meter, error in sorted(summary.errors.items()):
        print(f"{meter}: {error}")
    print(
        f"polled {summary.polled}: {summary.ok} ok, {summary.failed} failed, {summary.skipped} skipped; "
        f"{summary.stored} readings stored, {summary.duplicates} duplicates"
    )


async def _poll_main(poller: Poller, args: argparse.Namespace) -> int:
    if args.once:
        rows = await poller.meters()
        if args.meter:
            rows = [r for r in rows if r.name in set(args.meter)]
        summary = await poller.poll_all(meters=rows)
        _print_summary(summary)
        return 0 if summary.failed == 0 else 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await poller.run(stop)
    return 0


def _poll(args: argparse.Namespace, settings: Settings) -> int:
    config = PollerConfig.from_settings(settings, sync_clock=args.sync_clock)
    with open_database(settings) as db, db.connect() as conn:
        return asyncio.run(_poll_main(Poller(PollStore(conn), config), args))


# -- commission: identify, test-read and (optionally) register a meter, with a pass/fail report ----------------------
def _commission_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("uri", help="meter URI, e.g. modbus+tcp://10.0.0.5:502?unit=1&map=sdm630")
    parser.add_argument("--map", help="Modbus register map (sdm630, sdm120, sunspec)")
    parser.add_argument("--sync-clock", action="store_true", help="set the meter clock when it drifts")
    parser.add_argument("--register", action="store_true", help="add the meter to the registry when it passes")
    parser.add_argument("--meter", help="the meter id to register (required with --register)")
    parser.add_argument("--tariff")
    parser.add_argument("--account")
    parser.add_argument("--tz", default="UTC")
    parser.add_argument("--ct-ratio", type=float, default=1.0)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def _commission(args: argparse.Namespace, settings: Settings) -> int:
    text = args.uri
    if args.map and "map=" not in text:
        text += ("&" if "?" in text else "?") + f"map={args.map}"
    uri = parse_meter_uri(text)
    if args.register and not args.meter:
        raise ConfigError("--register needs --meter ID")
    print(f"commissioning {uri}", file=sys.stderr)
    report = asyncio.run(
        commission(
            uri,
            meter=args.meter,
            sync_clock=args.sync_clock,
            clock_tolerance_s=settings.clock_drift_tolerance_s,
            timeout_s=settings.poll_timeout_s,
            ct_ratio=args.ct_ratio,
            progress=sys.stderr,
        )
    )
    body = report.to_json()
    out_dir = Path(settings.data_dir) / "commissioning"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = (args.meter or uri.host or Path(uri.path or "meter").name).replace("/", "_")
    path = out_dir / f"{stem}-{report.started_at[:19].replace(':', '')}.json"
    path.write_text(json.dumps(body, indent=2, default=str))
    _store(settings, report, args)
    if args.json:
        print(json.dumps(body, indent=2, default=str))
    verdict = "PASS" if report.passed else "FAIL"
    failed = [c for c in report.checks if c.status == "fail"]
    print(f"{verdict}: {uri}" + (f" ({'; '.join(f'{c.name}: {c.detail}' for c in failed)})" if failed else ""))
    print(f"report: {path}")
    return 0 if report.passed else 1


def _store(settings: Settings, report: CommissioningReport, args: argparse.Namespace) -> None:
    with open_database(settings) as db, db.connect() as conn:
        store_report(conn, report, meter=args.meter)
        if not (args.register and report.passed):
            return
        register_meter(
            conn, report, args.meter, timezone=args.tz, tariff=args.tariff, account=args.account, ct_ratio=args.ct_ratio
        )
        print(f"meter {args.meter} registered", file=sys.stderr)


INGEST_MQTT = Command("run one MQTT ingest worker (several share the stream)", _ingest_arguments, _ingest)
POLL = Command("poll DLMS, IEC 62056-21 and Modbus meters on their schedule", _poll_arguments, _poll)
COMMISSION = Command("identify, test-read and register a meter", _commission_arguments, _commission)
