"""``amiflow bill render`` and ``amiflow bill send``: customer bill documents and e-bills (argparse and the glue; the
work is in billing_bridge.customer: documents, documents_data and ebill).

``bill render`` writes each bill of a month as a PDF and/or HTML page with an ``index.json``; ``bill send`` queues the
bill-ready e-mail with the PDF for every account that opted in to e-bills, which ``amiflow bridge run --sink email``
delivers (docs/bills.md).
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from amiflow.db import open_database
from amiflow.settings import Settings
from amiflow_app.command import Command
from billing_bridge.customer import parse_month
from billing_bridge.customer.documents import FORMATS, formats_of, write_documents
from billing_bridge.customer.documents_data import DocumentOptions, gather_documents
from billing_bridge.customer.ebill import queue_ebills

__all__ = ["BILL_RENDER", "BILL_SEND"]


def _options(settings: Settings) -> DocumentOptions:
    from billing_bridge.policy import load_ruleset

    ruleset = load_ruleset(settings.disconnect_ruleset)
    return DocumentOptions(terms_days=ruleset.payment_terms_days, ruleset=ruleset)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--period", required=True, metavar="YYYY-MM", help="the month whose bills to take")
    parser.add_argument("--account", metavar="A", help="only this account's bills")


def _render_args(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--format", choices=tuple(FORMATS), default="pdf", help="pdf (default), html or both")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the files and index.json")
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="render in this many processes (default: the CPUs)"
    )


def _render(args: argparse.Namespace, settings: Settings) -> int:
    period = parse_month(args.period)
    formats = formats_of(args.format)
    with open_database(settings) as db, db.connect() as conn:
        documents = gather_documents(conn, period, account=args.account, options=_options(settings))
    written = write_documents(documents, args.out, formats=formats, jobs=max(1, args.jobs))
    print(f"bill render: {len(written)} bill(s) of {args.period} as {' and '.join(formats)} in {args.out}"
          f" (index {args.out / 'index.json'})")  # fmt: skip
    return 0


def _send_args(parser: argparse.ArgumentParser) -> None:
    _common(parser)


def _send(args: argparse.Namespace, settings: Settings) -> int:
    period = parse_month(args.period)
    with open_database(settings) as db, db.connect() as conn:
        documents = gather_documents(conn, period, account=args.account, options=_options(settings))
        result = queue_ebills(conn, documents, now=datetime.now(UTC))
    skipped = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in sorted(result.skipped.items())) or "none"
    print(f"bill send: queued {result.queued} e-bill(s) of {args.period}, {result.already} queued before;"
          f" not sent by e-mail: {skipped}")  # fmt: skip
    if result.queued:
        print("bill send: 'amiflow bridge run --sink email' delivers them", file=sys.stderr)
    return 0


BILL_RENDER = Command(
    help="render a month's bills as customer documents (PDF and/or accessible HTML) with an index.json",
    add_arguments=_render_args,
    run=_render,
)
BILL_SEND = Command(
    help="queue the bill-ready e-mail with the PDF for every account of the month that opted in to e-bills",
    add_arguments=_send_args,
    run=_send,
)
