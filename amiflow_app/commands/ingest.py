"""``amiflow ingest mqtt``, ``amiflow poll`` and ``amiflow commission``: the acquisition commands.

Argument parsing, signals and printing only; the work is done by :class:`ingest.IngestWorker`, :class:`ingest.Poller`
and :func:`ingest.commission` (the commissioning sheet: :mod:`ingest.commissioning`).
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
from amiflow.db.meter_keys import MeterKey, read_key_file, set_meter_key
from amiflow.db.migrate import migrate
from amiflow.errors import ConfigError, StorageError
from amiflow.settings import Settings
from amiflow.uri import MeterUri, parse_meter_uri
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
from ingest.commissioning import Limits, load_limits, render_html, render_pdf, render_table
from ingest.meter_sessions import SessionFactory, open_session

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
    from ingest.mbus_keys import registry_sessions

    with open_database(settings) as db, db.connect() as conn:
        poller = Poller(PollStore(conn), config, session_factory=registry_sessions(db.url))
        return asyncio.run(_poll_main(poller, args))


# -- commission: identify, test-read, judge and (optionally) register a meter: the commissioning sheet --------------
_FORMATS = ("table", "json", "html", "pdf")


def _commission_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("uri", help="meter URI, e.g. modbus+tcp://10.0.0.5:502?unit=1&map=sdm630")
    parser.add_argument("--map", help="Modbus register map (sdm630, sdm120, sunspec, sdm630+breaker, a .csv)")
    parser.add_argument("--sync-clock", action="store_true", help="set the meter clock when it drifts")
    parser.add_argument("--register", action="store_true", help="add the meter to the registry when it passes")
    parser.add_argument("--meter", help="the meter id to register (required with --register)")
    parser.add_argument("--tariff", help="tariff of the registered meter")
    parser.add_argument("--account", help="account of the registered meter")
    parser.add_argument("--tz", default="UTC", help="time zone of the registered meter (default UTC)")
    parser.add_argument("--key-file", type=Path, help="an encrypting M-Bus meter's AES-128 key (OMS mode 5): a file of"
                        " 32 hex digits or its 16 raw bytes; decrypts the test reads, stored with --register, never"
                        " printed")  # fmt: skip
    limits = parser.add_argument_group("ranges (defaults in docs/commissioning.md; a --profile sets them too)")
    limits.add_argument("--profile", help="TOML file of commissioning limits (keys as in docs/commissioning.md)")
    limits.add_argument("--ct-ratio", help="the installation's CT ratio, e.g. 200/5 or 40 (default 1: direct)")
    limits.add_argument("--vt-ratio", help="the installation's VT ratio, e.g. 11000/110 (default 1: direct)")
    limits.add_argument("--nominal-voltage", type=float, help="phase-to-neutral nominal voltage (default 230 V)")
    limits.add_argument("--voltage-tolerance", type=float, help="percent either side of nominal (default 10)")
    limits.add_argument("--frequency", type=float, choices=(50.0, 60.0), help="nominal frequency (default 50 Hz)")
    limits.add_argument("--frequency-tolerance", type=float, help="percent either side (default 1)")
    limits.add_argument("--min-pf", type=float, help="lowest power factor per loaded phase (default 0.5)")
    limits.add_argument("--imax", type=float, help="the meter's Imax in A (default from the model, else 100)")
    limits.add_argument("--clock-tolerance", type=float, help="clock drift allowed in s (default the settings')")
    limits.add_argument("--relay", choices=("closed", "open", "any"), help="relay state expected (default closed)")
    limits.add_argument("--retries", type=int, help="retries of a read that timed out or broke (default 2)")
    out = parser.add_argument_group("output")
    out.add_argument("--format", choices=_FORMATS, default=None, help="table (default), json, html or pdf")
    out.add_argument("--out", help="write the sheet to FILE (html and pdf default to AMIFLOW_DATA_DIR/commissioning/)")
    out.add_argument("--json", action="store_true", help="the same as --format json")


def _commission_limits(args: argparse.Namespace, settings: Settings) -> Limits:
    base = load_limits(args.profile, Limits(clock_tolerance_s=settings.clock_drift_tolerance_s))
    return base.with_changes(
        ct_ratio=args.ct_ratio,
        vt_ratio=args.vt_ratio,
        nominal_voltage_v=args.nominal_voltage,
        voltage_tolerance_pct=args.voltage_tolerance,
        nominal_frequency_hz=args.frequency,
        frequency_tolerance_pct=args.frequency_tolerance,
        min_power_factor=args.min_pf,
        imax_a=args.imax,
        clock_tolerance_s=args.clock_tolerance,
        relay_expected=args.relay,
        retries=args.retries,
    )


def _commission_uri(args: argparse.Namespace) -> MeterUri:
    text = args.uri
    if args.map and "map=" not in text:
        text += ("&" if "?" in text else "?") + f"map={args.map}"
    uri = parse_meter_uri(text)
    if uri.protocol == "mqtt":
        raise ConfigError(f"{uri}: MQTT meters push their readings; there is no link to commission them over")
    if uri.protocol not in ("dlms", "modbus", "iec62056-21", "mbus", "sml"):
        raise ConfigError(
            f"{uri}: {uri.protocol} meters cannot be commissioned yet (DLMS, Modbus, IEC 62056-21, M-Bus, SML can)"
        )
    return uri


def _commission(args: argparse.Namespace, settings: Settings) -> int:
    uri = _commission_uri(args)
    if args.register and not args.meter:
        raise ConfigError("--register needs --meter ID")
    fmt = "json" if args.json and args.format is None else (args.format or "table")
    limits = _commission_limits(args, settings)
    key = _commission_key(args, uri)
    sessions: SessionFactory = open_session
    if key is not None:
        from ingest.mbus_keys import key_sessions

        sessions = key_sessions(key)
    print(f"commissioning {uri}", file=sys.stderr)
    report = asyncio.run(
        commission(
            uri,
            meter=args.meter,
            sync_clock=args.sync_clock,
            timeout_s=settings.poll_timeout_s,
            limits=limits,
            progress=sys.stderr,
            session_factory=sessions,
        )
    )
    out_dir = Path(settings.data_dir) / "commissioning"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = (args.meter or uri.host or Path(uri.path or "meter").name).replace("/", "_")
    stem = f"{stem}-{report.started_at[:19].replace(':', '')}"
    path = out_dir / f"{stem}.json"
    body = json.dumps(report.to_json(), indent=2, default=str)
    path.write_text(body)
    _store(settings, report, args, limits.ct_ratio, key)
    sheet = _write_sheet(report, fmt, args.out, out_dir / f"{stem}.{fmt}", body)
    if fmt == "table":
        print(render_table(report), end="")
    elif fmt == "json" and not args.out:
        print(body)
    failed = report.named("fail")
    notes = sys.stderr if fmt == "json" and not args.out else sys.stdout  # JSON on stdout stays parseable
    verdict = f"{report.verdict}: {uri}"
    print(verdict + (f" ({'; '.join(f'{c.name}: {c.detail}' for c in failed)})" if failed else ""), file=notes)
    print(f"report: {path}", file=notes)
    if sheet is not None:
        print(f"sheet: {sheet}", file=notes)
    return 0 if report.passed else 1


def _write_sheet(report: CommissioningReport, fmt: str, out: str | None, default: Path, body: str) -> Path | None:
    """Write the sheet in ``fmt`` to ``out`` (html and pdf: to ``default`` without one); the path written, if any."""
    if out is None and fmt in ("table", "json"):
        return None
    target = Path(out) if out else default
    try:
        if fmt == "pdf":
            target.write_bytes(render_pdf(report))
        else:
            text = {"table": render_table, "html": render_html}.get(fmt)
            target.write_text(text(report) if text else body, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--out {target}: cannot write: {exc.strerror}") from None
    return target


def _commission_key(args: argparse.Namespace, uri: MeterUri) -> MeterKey | None:
    if args.key_file is None:
        return None
    if uri.protocol != "mbus":
        raise ConfigError(f"--key-file: {uri.protocol} meters take no AES key here (M-Bus meters do)")
    return read_key_file(args.key_file)


def _store(
    settings: Settings, report: CommissioningReport, args: argparse.Namespace, ct_ratio: float, key: MeterKey | None
) -> None:
    with open_database(settings) as db, db.connect() as conn:
        store_report(conn, report, meter=args.meter)
        if not (args.register and report.passed):
            return
        register_meter(
            conn, report, args.meter, timezone=args.tz, tariff=args.tariff, account=args.account, ct_ratio=ct_ratio
        )
        if key is not None:  # in the same transaction: a meter is never registered without the key it was read with
            set_meter_key(conn, args.meter, key)
        print(f"meter {args.meter} registered" + (" with its AES key" if key else ""), file=sys.stderr)


INGEST_MQTT = Command("run one MQTT ingest worker (several share the stream)", _ingest_arguments, _ingest)
POLL = Command(
    "poll DLMS, IEC 62056-21 and Modbus meters on their schedule; read SML and P1 push meters meanwhile",
    _poll_arguments,
    _poll,
)
COMMISSION = Command(
    "identify, test-read, judge and register a meter: the commissioning sheet", _commission_arguments, _commission
)
