"""``amiflow db migrate|status|maintain`` and
``amiflow meters add|list|show|import|set-key|move-in|move-out|credentials``."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from datetime import date
from pathlib import Path

from amiflow.db import Database, database_url
from amiflow.db.meter_keys import delete_meter_key, has_meter_key, read_key_file, set_meter_key
from amiflow.db.migrate import migrate, status
from amiflow.db.registry import MeterRecord, add_meter, get_meter, import_meters_csv, list_meters
from amiflow.errors import ConfigError
from amiflow.settings import Settings
from amiflow.uri import PROTOCOLS
from amiflow_app.command import Command, read_csv_file

__all__ = [
    "MAINTAIN",
    "METERS_ADD",
    "METERS_CREDENTIALS",
    "METERS_IMPORT",
    "METERS_LIST",
    "METERS_MOVE_IN",
    "METERS_MOVE_OUT",
    "METERS_SET_KEY",
    "METERS_SHOW",
    "MIGRATE",
    "STATUS",
]


def _no_args(parser: argparse.ArgumentParser) -> None:
    del parser


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    url = database_url(settings)
    applied = migrate(
        url,
        chunk_interval=settings.chunk_interval,
        compress_after=settings.compress_after,
        partitions_ahead=settings.partitions_ahead,
    )
    st = status(url)
    print(f"applied {', '.join(applied)}" if applied else "schema up to date", f"(version {st.applied[-1]},", end=" ")
    print(f"storage: {st.backend})")
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    st = status(database_url(settings))
    print(f"schema version: {st.applied[-1] if st.applied else 'none'}")
    print(f"pending migrations: {', '.join(st.pending) or 'none'}")
    print(f"storage: {st.backend}" + (f" (TimescaleDB {st.timescaledb_version})" if st.timescaledb_version else ""))
    for key, value in st.features.items():
        print(f"  {key}: {value}")
    return 0 if not st.pending else 1


def _maintain_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", type=_date,
                        help="pack days from this UTC day on (default: the last 3 days, or from the day after the last "
                             "packed day when that is older)")  # fmt: skip
    parser.add_argument("--settle", type=int, default=3600, metavar="S", help="pack a day S seconds after it ends")
    parser.add_argument("--rollup-every", type=int, default=3600, metavar="S",
                        help="refresh the plain-PostgreSQL rollup when older than S seconds (0 = now)")  # fmt: skip
    parser.add_argument("--no-pack", action="store_true", help="do not pack days")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def _maintain(args: argparse.Namespace, settings: Settings) -> int:
    from amiflow.db.maintenance import MaintainOptions, maintain

    opts = MaintainOptions(pack=not args.no_pack, pack_since=args.since, settle_s=args.settle,
                           rollup_every_s=args.rollup_every)  # fmt: skip
    with _open(settings) as db, db.connect() as conn:
        report = maintain(conn, opts)
    if args.json:
        print(json.dumps(report.as_dict(), default=str, indent=2))
        return 1 if report.errors else 0
    if report.skipped:
        print("another maintenance pass is running; nothing done")
        return 0
    p = report.packed
    print(f"storage: {report.backend}; packed {p.days} day(s), repacked {p.repacked} meter-day(s): {p.packs} packs"
          f" of {p.readings} readings in {p.seconds:.1f} s")  # fmt: skip
    if report.rollup_refreshed:
        print(f"rollup energy_hourly refreshed in {report.rollup_s:.1f} s")
    for job in report.jobs:
        ran = " (run now by amiflow)" if job.job_id in report.jobs_run else ""
        print(f"job {job.job_id} {job.proc_name} on {job.relation}: {job.problem or 'ok'}{ran}")
    for line in report.covered:
        print(f"note: {line}", file=sys.stderr)
    for line in report.problems + report.errors:
        print(f"warning: {line}", file=sys.stderr)
    return 1 if report.errors else 0


def _open(settings: Settings) -> Database:
    from amiflow.db import open_database

    return open_database(settings)


def _add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("meter", help="the meter id (as on its MQTT topic)")
    parser.add_argument("--protocol", required=True, choices=PROTOCOLS)
    parser.add_argument("--uri", help="connection URI, e.g. modbus+tcp://HOST:502?unit=1&map=sdm630")
    parser.add_argument("--tz", default="UTC", help="IANA time zone of the meter (default UTC)")
    parser.add_argument("--tariff")
    parser.add_argument("--account")
    parser.add_argument("--feeder")
    parser.add_argument("--ct-ratio", type=float, default=1.0)
    parser.add_argument("--vt-ratio", type=float, default=1.0)
    parser.add_argument("--key-file", type=Path, help="the M-Bus / wM-Bus meter's AES-128 key: a file of 32 hex digits"
                        " (or its 16 raw bytes); stored apart, never printed")  # fmt: skip


def _add(args: argparse.Namespace, settings: Settings) -> int:
    record = MeterRecord(
        name=args.meter,
        protocol=args.protocol,
        uri=args.uri,
        timezone=args.tz,
        tariff=args.tariff,
        account=args.account,
        feeder=args.feeder,
        ct_ratio=args.ct_ratio,
        vt_ratio=args.vt_ratio,
    )
    record.check()  # before starting any database
    key = read_key_file(args.key_file) if args.key_file else None
    with _open(settings) as db, db.connect() as conn, conn.transaction():
        meter_id = add_meter(conn, record)
        if key is not None:
            set_meter_key(conn, record.name, key)
    print(f"meter {record.name} registered (id {meter_id})" + (" with its AES key" if key else ""))
    return 0


def _set_key_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("meter")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--key-file", type=Path, help="a file of 32 hex digits (or the 16 raw bytes of the key)")
    which.add_argument("--remove", action="store_true", help="forget the meter's key")


def _set_key(args: argparse.Namespace, settings: Settings) -> int:
    key = read_key_file(args.key_file) if args.key_file else None
    with _open(settings) as db, db.connect() as conn:
        if key is not None:
            set_meter_key(conn, args.meter, key)
            print(f"meter {args.meter}: AES key stored")
        elif delete_meter_key(conn, args.meter):
            print(f"meter {args.meter}: AES key removed")
        else:
            print(f"meter {args.meter}: had no AES key")
    return 0


def _list_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--protocol", choices=PROTOCOLS)
    parser.add_argument("--json", action="store_true", help="print JSON lines")


def _list(args: argparse.Namespace, settings: Settings) -> int:
    with _open(settings) as db, db.connect() as conn:
        meters = list_meters(conn, protocol=args.protocol)
    if args.json:
        for m in meters:
            print(json.dumps(asdict(m), default=str))
        return 0
    print(f"{'meter':<16} {'protocol':<12} {'status':<11} {'state':<8} {'tz':<20} {'tariff':<14} account")
    for m in meters:
        print(
            f"{m.name:<16} {m.protocol:<12} {m.status:<11} {m.state:<8} {m.timezone:<20} {m.tariff or '-':<14} "
            f"{m.account or '-'}"
        )
    print(f"{len(meters)} meter(s)")
    return 0


def _show_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("meter")


def _show(args: argparse.Namespace, settings: Settings) -> int:
    with _open(settings) as db, db.connect() as conn:
        record = get_meter(conn, args.meter)
        keyed = record is not None and has_meter_key(conn, args.meter)
    if record is None:
        raise ConfigError(f"meter {args.meter}: not registered (see `amiflow meters list`)")
    shown = asdict(record) | ({"aes_key": "stored (never shown)"} if keyed else {})
    print(json.dumps(shown, indent=2, default=str))
    return 0


def _import_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="CSV with header meter,protocol,uri,timezone,tariff,account")


def _import(args: argparse.Namespace, settings: Settings) -> int:
    text = read_csv_file(args.file)
    with _open(settings) as db, db.connect() as conn:
        count = import_meters_csv(conn, text, source=str(args.file))
    print(f"imported {count} meter(s) from {args.file}")
    return 0


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def _move_in_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("meter")
    parser.add_argument("--account", required=True, help="the account taking service through the meter")
    parser.add_argument("--on", type=_date, required=True, help="the first local day of service (YYYY-MM-DD)")
    parser.add_argument("--until", type=_date, help="the move-out day, if known (first day without service)")


def _move_in(args: argparse.Namespace, settings: Settings) -> int:
    from rating.service_store import add_service

    if args.until is not None and args.until <= args.on:
        raise ConfigError(f"--until {args.until} must be after --on {args.on}")
    with _open(settings) as db, db.connect() as conn:
        add_service(conn, args.meter, args.account, args.on, args.until)
    until = f" until {args.until}" if args.until else ""
    print(f"{args.account} takes service through {args.meter} from {args.on}{until} (bills prorate by days)")
    return 0


def _move_out_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("meter")
    parser.add_argument("--on", type=_date, required=True, help="the first local day without service (YYYY-MM-DD)")


def _move_out(args: argparse.Namespace, settings: Settings) -> int:
    from rating.service_store import end_service

    with _open(settings) as db, db.connect() as conn:
        if not end_service(conn, args.meter, args.on):
            raise ConfigError(f"meter {args.meter}: no open service period to end (see `amiflow meters move-in`)")
    print(f"service through {args.meter} ends on {args.on}")
    return 0


def _credentials_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, help="write the Mosquitto password file here (default: standard output)")
    parser.add_argument("--secrets", type=Path, help="the plain username:password file, kept and extended (mode 0600;"
                        " default AMIFLOW_DATA_DIR/mqtt-passwords.txt)")  # fmt: skip
    parser.add_argument("--service", action="append", metavar="USER", help="a head-end account (default: "
                        "amiflow-ingest and amiflow-bridge); repeat for several")  # fmt: skip
    parser.add_argument("--all", action="store_true", help="every active meter, not only those that talk MQTT")


def _credentials(args: argparse.Namespace, settings: Settings) -> int:
    from amiflow_app import broker_credentials as bc

    with _open(settings) as db, db.connect() as conn:
        registered = [m for m in list_meters(conn) if m.status != "inactive"]
    meters = [m.name for m in registered if args.all or m.protocol == "mqtt" or (m.uri or "").startswith("mqtt://")]
    secrets_path = args.secrets or settings.data_dir / "mqtt-passwords.txt"
    found = bc.fleet_credentials([*(args.service or bc.SERVICE_USERS), *meters], bc.read_secrets(secrets_path))
    for meter, why in found.refused:
        print(f"meter {meter!r}: no credentials: {why}", file=sys.stderr)
    bc.write_private(secrets_path, "".join(f"{u}:{p}\n" for u, p in sorted(found.passwords.items())))
    if args.out is None:
        sys.stdout.write(bc.password_file(found.passwords))
    else:
        bc.write_private(args.out, bc.password_file(found.passwords))
    where = f"; password file {args.out}" if args.out else ""
    print(
        f"{len(found.passwords)} MQTT credentials ({len(found.new)} new) for {len(meters)} meter(s);"
        f" plain passwords in {secrets_path}{where}",
        file=sys.stderr,
    )
    return 0 if not found.refused else 1


MIGRATE = Command("apply the schema migrations (idempotent)", _no_args, _migrate)
MAINTAIN = Command("pack settled days, refresh rollups, run failing TimescaleDB jobs (for cron)", _maintain_args,
                   _maintain)  # fmt: skip
STATUS = Command("show the schema version and the TimescaleDB features in use", _no_args, _status)
METERS_ADD = Command("register a meter", _add_args, _add)
METERS_LIST = Command("list registered meters", _list_args, _list)
METERS_SHOW = Command("show one meter", _show_args, _show)
METERS_IMPORT = Command("import meters from CSV (an optional key column: M-Bus AES keys)", _import_args, _import)
METERS_SET_KEY = Command("store, replace or remove an M-Bus / wM-Bus meter's AES-128 key (never printed)",
                         _set_key_args, _set_key)  # fmt: skip
METERS_MOVE_IN = Command(
    "record a move-in: an account takes service through a meter from a day", _move_in_args, _move_in
)
METERS_MOVE_OUT = Command("record a move-out: the meter's open service period ends on a day", _move_out_args, _move_out)
METERS_CREDENTIALS = Command(
    "MQTT usernames (the meter ids) and passwords for the registered fleet and the head-end's accounts, as a"
    " Mosquitto password file (PBKDF2-SHA512, as mosquitto_passwd writes) for deploy/mosquitto",
    _credentials_args,
    _credentials,
)
