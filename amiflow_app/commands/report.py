"""``amiflow report --period YYYY-MM``: writes the HTML report of :mod:`amiflow_app.report`.

``amiflow report collection --period YYYY-MM --by region|collector [--format csv|html] [--out DIR]``: the collection
KPIs per group (:mod:`amiflow_app.report.collection`): a text table on stdout by default, CSV on stdout (or into
``--out``), or the HTML report with a plot per KPI over the last 12 months in ``--out`` (default
DATA_DIR/reports/PERIOD).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from amiflow.settings import Settings
from amiflow_app.command import Command
from amiflow_app.report import build_report, period_bounds

__all__ = ["REPORT"]


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    # --period is checked in _run, not by argparse: 'report collection' takes its own --period after the word
    parser.add_argument("--period", help="YYYY-MM (required)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default DATA_DIR/reports/PERIOD)")
    parser.add_argument(
        "--meter", help="the meter whose load curve is shown (default: the account's, else the most flagged)"
    )
    parser.add_argument("--account", help="the account whose story, bill and meter the report follows")
    parser.set_defaults(_report_parser=parser, report_kind=None)
    kinds = parser.add_subparsers(dest="report_kind", metavar="{collection}", help="another report instead")
    col = kinds.add_parser(
        "collection",
        help="collection KPIs per region or collector",
        description="amiflow report collection: billed, collected, collection rate, arrears by age, plans,"
        " reminders, disconnects and reconnects, DSO per region or collector; the HTML has a plot per KPI over the"
        " last 12 months",
    )
    col.add_argument("--period", required=True, help="YYYY-MM")
    col.add_argument("--by", choices=("region", "collector"), default="region", help="group accounts by (region)")
    col.add_argument("--format", choices=("csv", "html"), help="CSV or the HTML report (default: a text table)")
    col.add_argument("--out", type=Path, default=None, help="output folder (default DATA_DIR/reports/PERIOD)")
    col.add_argument("--ruleset", help="rule set (its time zone and ladder); default AMIFLOW_DISCONNECT_RULESET")


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from amiflow.db import open_database

    if args.report_kind == "collection":
        return _collection(args, settings)
    if args.period is None:
        args._report_parser.error("the following arguments are required: --period")
    period_bounds(args.period)
    out = args.out or Path(settings.data_dir) / "reports" / args.period
    with open_database(settings) as db, db.connect() as conn:
        path = build_report(conn, args.period, out, meter=args.meter, account=args.account)
    print(f"report written to {path}")
    return 0


def _collection(args: argparse.Namespace, settings: Settings) -> int:
    from amiflow.db import open_database
    from amiflow_app.report.collection import gather_collection, write_collection_report
    from billing_bridge.policy import load_ruleset

    start, _ = period_bounds(args.period)
    rs = load_ruleset(args.ruleset or settings.disconnect_ruleset)
    with open_database(settings) as db, db.connect() as conn:
        report = gather_collection(conn, rs, start.date(), args.by)
    out = args.out or Path(settings.data_dir) / "reports" / args.period
    if args.format == "html":
        print(f"collection report written to {write_collection_report(report, out)}")
    elif args.format == "csv" and args.out is not None:
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"collection-{args.by}-{args.period}.csv"
        path.write_text(report.csv(), encoding="utf-8")
        print(f"collection CSV written to {path}")
    elif args.format == "csv":
        print(report.csv(), end="")
    else:
        print(f"collection by {args.by}, {args.period} (rule set {rs.id}, {rs.timezone})")
        print(report.text())
    return 0


REPORT = Command("write the HTML report (with PNG plots) of a period, or the collection KPIs", _add_arguments, _run)
