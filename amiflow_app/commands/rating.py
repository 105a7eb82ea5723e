"""The rating commands: ``amiflow rate``, ``amiflow tariffs import|list|show``, ``amiflow vee run`` and
``amiflow bill run`` (argparse and the glue; the work is in the rating package).

``rate`` rates a usage CSV offline (rating.offline); ``tariffs`` reads tariff files (rating.tariff_files) and the
tariffs table (rating.tariff_store). ``bill run`` and ``vee run`` share one block machinery (rating.billing_run):
per block of meters the intervals are read, validated and estimated (and for ``bill run`` rated and billed), and the
results replace the previous ones of that month, in one transaction per block; both are resumable.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg

from amiflow.errors import ConfigError, RatingError, StorageError
from amiflow.settings import Settings
from amiflow_app.command import Command
from rating.billing_run import RunOptions, parse_period, run_billing
from rating.compile import compile_tariff
from rating.offline import rate_usage, read_usage_csv, whole_months
from rating.tariff_files import load_tariff
from rating.tariff_store import list_tariffs, store_tariff, tariff_versions

__all__ = ["BILL_RUN", "RATE", "TARIFFS_IMPORT", "TARIFFS_LIST", "TARIFFS_SHOW", "VEE_RUN"]


def _rate_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tariff", type=Path, required=True, help="tariff file: amiflow JSON/TOML or URDB JSON")
    parser.add_argument("--usage", type=Path, required=True, help="CSV with header ts,kwh (ts = interval END)")
    parser.add_argument("--tz", default="UTC", help="IANA time zone the tariff is evaluated in (default UTC)")
    parser.add_argument("--period", help="bill one month YYYY-MM (default: every whole month in the file)")
    parser.add_argument("--meter", default="usage", help="meter name to print on the bill")
    parser.add_argument(
        "--what-if",
        action="store_true",
        help="rate with the tariff's latest version, ignoring its effective dates; the bill says hypothetical",
    )


def _rate(args: argparse.Namespace, settings: Settings) -> int:
    del settings
    versions = load_tariff(args.tariff)
    if args.what_if:
        from billing_bridge.customer import what_if  # only here: the billing side is not needed to rate a file

        versions = [what_if(max(versions, key=lambda v: v.version))]
    usage = read_usage_csv(args.usage)
    try:
        zone = ZoneInfo(args.tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"--tz {args.tz!r}: unknown IANA time zone") from None
    if args.period:
        try:
            month = datetime.strptime(args.period, "%Y-%m").date()
        except ValueError:
            raise ConfigError(f"--period {args.period!r}: expected YYYY-MM") from None
        bills = _marked(rate_usage(versions, usage, args.tz, [month], meter=args.meter), args.what_if)
        print(json.dumps(bills[0], indent=2))
        return 0
    months = whole_months(usage, zone)
    if not months:
        raise RatingError(f"{args.usage}: holds no whole month in {args.tz}; use --period or give a whole month")
    print(json.dumps(_marked(rate_usage(versions, usage, args.tz, months, meter=args.meter), args.what_if), indent=2))
    return 0


def _marked(bills: list[dict[str, Any]], hypothetical: bool) -> list[dict[str, Any]]:
    """With --what-if every bill carries ``"hypothetical": true`` (a real bill has no such key)."""
    return [{**b, "hypothetical": True} for b in bills] if hypothetical else bills


# -- the tariffs table -----------------------------------------------------------------------------------------------


def _open(settings: Settings) -> Any:
    from amiflow.db import open_database

    return open_database(settings)


def _import_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="amiflow JSON/TOML tariff, URDB rate item or URDB API response")


def _import(args: argparse.Namespace, settings: Settings) -> int:
    specs = load_tariff(args.file)
    for spec in specs:
        compile_tariff(spec)  # refuse what cannot rate, before storing it
    with _open(settings) as db, db.connect() as conn:
        for spec in specs:
            result = store_tariff(conn, spec)
            print(f"tariff {spec.id} version {spec.version} ({spec.source}, from {spec.effective_from}): {result}")
    return 0


def _list_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON lines")


def _list(args: argparse.Namespace, settings: Settings) -> int:
    with _open(settings) as db, db.connect() as conn:
        rows = list_tariffs(conn)
    if args.json:
        for r in rows:
            print(json.dumps(asdict(r), default=str))
        return 0
    print(f"{'tariff':<28} {'version':>7} {'from':<10} {'to':<10} {'source':<7} name")
    for r in rows:
        to = str(r.effective_to) if r.effective_to else "-"
        print(f"{r.id:<28} {r.version:>7} {r.effective_from!s:<10} {to:<10} {r.source:<7} {r.name}")
    print(f"{len(rows)} tariff version(s)")
    return 0


def _show_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tariff", help="tariff id")
    parser.add_argument("--version", type=int, help="version (default: the latest)")


def _show(args: argparse.Namespace, settings: Settings) -> int:
    with _open(settings) as db, db.connect() as conn:
        versions = tariff_versions(conn, args.tariff)
    if args.version is not None:
        versions = [v for v in versions if v.version == args.version]
    if not versions:
        what = f"{args.tariff} version {args.version}" if args.version else args.tariff
        raise ConfigError(f"tariff {what}: not found (see `amiflow tariffs list`)")
    print(json.dumps(versions[-1].model_dump(mode="json"), indent=2))
    return 0


RATE = Command("rate a usage CSV offline with a tariff file; prints bill JSON", _rate_args, _rate)
TARIFFS_IMPORT = Command("import tariffs (amiflow JSON/TOML or OpenEI URDB JSON)", _import_args, _import)
TARIFFS_LIST = Command("list stored tariff versions", _list_args, _list)
TARIFFS_SHOW = Command("show one stored tariff version as JSON", _show_args, _show)


# -- billing and VEE runs --------------------------------------------------------------------------------------------


def _format_summary(s: dict[str, Any]) -> str:
    """The human summary of a run, as printed."""
    head = f"{'billing' if s.get('kind') == 'bill' else 'VEE'} run {s['run_id']} for {s['period']} (cycle {s['cycle']})"
    lines = [head + (" resumed" if s.get("resumed") else "")]
    if s.get("kind") == "bill":
        lines += [
            f"  meters billed: {s['meters_billed']}   validated: {s['meters_validated']}   VEE holds: {s['vee_holds']}",
            f"  bills: {s['bills']['new']} new, {s['bills']['revised']} new versions, "
            f"{s['bills']['unchanged']} unchanged",
            f"  estimated share of billed intervals: {s['estimated_share']:.2%} ({s['estimated_intervals']} intervals)",
        ]
    else:
        lines += [
            f"  meters validated: {s['meters_validated']}   VEE holds: {s['vee_holds']}",
            f"  estimated share: {s['validated_estimated_share']:.2%}",
        ]
    for reason, n in sorted(s["skipped"].items()):
        lines.append(f"  skipped {reason}: {n}")
    for cur, total in s["totals"].items():
        lines.append(f"  total {cur}: {total}")
    sec = s["seconds"]
    lines.append(
        f"  time: {sec['wall']:.1f} s wall; read {sec['read']:.1f} s, VEE {sec['vee']:.1f} s, "
        f"rate {sec['rate']:.1f} s, write {sec['write']:.1f} s (summed over blocks)"
    )
    return "\n".join(lines)


def _run_arguments(parser: argparse.ArgumentParser, *, billing: bool) -> None:
    """Arguments shared by ``bill run`` and ``vee run``."""
    parser.add_argument("--period", required=True, help="the month, YYYY-MM (local dates of each meter's zone)")
    parser.add_argument("--cycle", help="only meters of this billing cycle (docs/vee-billing.md)")
    parser.add_argument("--cycles", type=int, default=20, help="hash-based cycles for meters without one (20)")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="local worker processes (0 = this process)")  # fmt: skip
    parser.add_argument("--history-weeks", type=int, default=4, help="history read for VEE references (4)")
    if billing:
        parser.add_argument("--dask", metavar="ADDRESS", help="run blocks on a Dask cluster, e.g. tcp://127.0.0.1:8786")
        parser.add_argument("--max-estimated-share", type=float, default=0.5,
                            help="hold meters with more estimated intervals than this (0.5)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def _run_options(args: argparse.Namespace, settings: Settings, kind: str) -> RunOptions:
    """The run options of ``bill run`` / ``vee run`` arguments; ConfigError for values out of range."""
    if args.cycles < 1 or args.workers < 0 or args.history_weeks < 0:
        raise ConfigError("--cycles must be >= 1, --workers and --history-weeks >= 0")
    return RunOptions(
        period=parse_period(args.period),
        kind=kind,
        cycle=args.cycle,
        cycles=args.cycles,
        block_meters=settings.billing_block_meters,
        history_weeks=args.history_weeks,
        max_estimated_share=getattr(args, "max_estimated_share", 1.0),
        workers=args.workers,
        dask=getattr(args, "dask", None),
        progress=not args.json,
    )


def _run_command(args: argparse.Namespace, settings: Settings, kind: str) -> int:
    """Run (or resume) a billing or VEE run and print its summary."""
    from amiflow.db import open_database

    opts = _run_options(args, settings, kind)
    db = open_database(settings)
    try:
        result = run_billing(db.url, opts)
    except psycopg.OperationalError as exc:
        raise StorageError(f"database unavailable: {str(exc).strip()}") from exc
    finally:
        db.close()
    if args.json:
        print(json.dumps(result.summary, indent=2))
    else:
        print(_format_summary(result.summary))
    return 0


def _bill_args(parser: argparse.ArgumentParser) -> None:
    _run_arguments(parser, billing=True)


def _bill_run(args: argparse.Namespace, settings: Settings) -> int:
    return _run_command(args, settings, "bill")


def _vee_args(parser: argparse.ArgumentParser) -> None:
    _run_arguments(parser, billing=False)


def _vee_run(args: argparse.Namespace, settings: Settings) -> int:
    return _run_command(args, settings, "vee")


BILL_RUN = Command(
    help="billing run of a month: VEE, rating, bills and outbox rows (idempotent, resumable)",
    add_arguments=_bill_args,
    run=_bill_run,
)
VEE_RUN = Command(
    help="validate and estimate a month's intervals of all meters (pre/post versions stored)",
    add_arguments=_vee_args,
    run=_vee_run,
)
