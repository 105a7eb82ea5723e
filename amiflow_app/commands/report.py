"""``amiflow report --period YYYY-MM``: writes the HTML report of :mod:`amiflow_app.report`."""

from __future__ import annotations

import argparse
from pathlib import Path

from amiflow.settings import Settings
from amiflow_app.command import Command
from amiflow_app.report import build_report, period_bounds

__all__ = ["REPORT"]


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--period", required=True, help="YYYY-MM")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default DATA_DIR/reports/PERIOD)")
    parser.add_argument(
        "--meter", help="the meter whose load curve is shown (default: the account's, else the most flagged)"
    )
    parser.add_argument("--account", help="the account whose story, bill and meter the report follows")


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from amiflow.db import open_database

    period_bounds(args.period)
    out = args.out or Path(settings.data_dir) / "reports" / args.period
    with open_database(settings) as db, db.connect() as conn:
        path = build_report(conn, args.period, out, meter=args.meter, account=args.account)
    print(f"report written to {path}")
    return 0


REPORT = Command("write the HTML report (with PNG plots) of a period", _add_arguments, _run)
