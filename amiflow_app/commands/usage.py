"""``amiflow usage export|insights|token``: a customer's usage as Green Button (ESPI) or CSV, usage insights with the
best-tariff advice, and the bearer token that opens one account's usage in the HTTP API (argparse and the glue; the
work is in billing_bridge.customer).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from amiflow.db import Database, open_database
from amiflow.errors import ConfigError
from amiflow.settings import Settings
from amiflow_app.command import Command
from billing_bridge.customer import customer_token, export_usage, parse_day, parse_month, usage_insights
from billing_bridge.customer.usage import account_known, find_meter

__all__ = ["USAGE_EXPORT", "USAGE_INSIGHTS", "USAGE_TOKEN"]


def _open(settings: Settings) -> Database:
    return open_database(settings)


def _export_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--meter", required=True, help="the meter id")
    parser.add_argument("--from", dest="start", required=True, metavar="DATE", help="first local day (YYYY-MM-DD)")
    parser.add_argument("--to", dest="end", required=True, metavar="DATE", help="the local day after the last one")
    parser.add_argument("--format", choices=("espi", "csv"), default="espi", help="Green Button Atom XML or CSV")
    parser.add_argument("--out", type=Path, help="write to this file (default: standard output)")


def _export(args: argparse.Namespace, settings: Settings) -> int:
    start, end = parse_day(args.start, "--from"), parse_day(args.end, "--to")
    if start >= end:
        raise ConfigError(f"--from {start} is not before --to {end}: the period is empty (--to is exclusive)")
    with _open(settings) as db, db.connect() as conn:
        data = export_usage(conn, args.meter, start, end, args.format)
    if args.out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        args.out.write_bytes(data)
        print(f"wrote {args.out} ({len(data)} bytes, {args.format})", file=sys.stderr)
    return 0


def _insights_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--meter", required=True, help="the meter id")
    parser.add_argument("--period", required=True, metavar="YYYY-MM", help="the local month")
    parser.add_argument("--format", choices=("text", "json"), default="text")


def _insights(args: argparse.Namespace, settings: Settings) -> int:
    period = parse_month(args.period)
    with _open(settings) as db, db.connect() as conn:
        found = usage_insights(conn, args.meter, period)
    if args.format == "json":
        print(json.dumps(found.to_json(), indent=2))
    else:
        print("\n".join(found.sentences()))
    return 0


def _token_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--account", required=True, help="the account the token opens")
    parser.add_argument("--meter", help="check that this meter belongs to the account")


def _token(args: argparse.Namespace, settings: Settings) -> int:
    token = customer_token(settings, args.account)  # before the database: a missing secret is the likelier fault
    with _open(settings) as db, db.connect() as conn:
        if args.meter:
            find_meter(conn, args.meter, account=args.account)
        elif not account_known(conn, args.account):
            raise ConfigError(f"unknown account {args.account!r}")
    print(token)
    return 0


USAGE_EXPORT = Command(
    "a customer's usage of local days [--from, --to) as a Green Button (ESPI) Atom feed or CSV", _export_args, _export
)
USAGE_INSIGHTS = Command(
    "baseload, peak hours, month-on-month and year-on-year use, and the best tariff for a meter's month",
    _insights_args,
    _insights,
)
USAGE_TOKEN = Command(
    "print the bearer token that opens one account's usage in the HTTP API (keyed from AMIFLOW_API_TOKEN)",
    _token_args,
    _token,
)
