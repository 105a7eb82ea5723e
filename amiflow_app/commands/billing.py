"""The billing commands: ``amiflow bridge run|failed|retry``, ``payments import``, ``arrears report`` and
``disconnect plan|run``: their arguments, and the printing around the calls into :mod:`billing_bridge`.

``disconnect plan``: charge prepaid accounts, send the due reminder rungs, evaluate every overdue account against the
policy and record each decision; prints the decisions. ``disconnect run``: the same, then issue the allowed
disconnects, schedule reconnects for accounts that paid, and send every pending command to its meter (reading the
relay back). Without ``--forecast-min/--forecast-max`` the weather is unknown, which blocks disconnects under rule sets
that require a forecast (both bundled ones do).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from amiflow.db import Database, open_database
from amiflow.errors import ConfigError, StorageError
from amiflow.settings import Settings
from amiflow_app.command import Command
from billing_bridge import CollectionsRun, DispatchConfig, Dispatcher, make_sink, riskiest_accounts, run_collections
from billing_bridge.email_sink import make_email_sink
from billing_bridge.payments import billing_window, import_csv
from billing_bridge.policy import RuleSet, load_ruleset
from billing_bridge.sinks import Sink
from billing_bridge.store import list_failed, requeue

__all__ = [
    "ARREARS_REPORT",
    "BRIDGE_FAILED",
    "BRIDGE_RETRY",
    "BRIDGE_RUN",
    "DISCONNECT_PLAN",
    "DISCONNECT_RUN",
    "PAYMENTS_IMPORT",
]


def _run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--follow", action="store_true", help="keep running and deliver new items as they are queued")
    p.add_argument(
        "--sink",
        choices=("webhook", "cim", "file", "email"),
        default="webhook",
        help="webhook: JSON to AMIFLOW_BILLING_URL (default); cim: IEC 61968-9 XML to the same URL; file: --out DIR;"
        " email: the queued e-bills to the customers over AMIFLOW_SMTP_URL",
    )
    p.add_argument("--out", type=Path, help="directory of the file drop (--sink file)")
    p.add_argument("--format", choices=("jsonl", "csv"), default="jsonl", help="file drop format")
    p.add_argument("--concurrency", type=int, default=64, help="concurrent HTTP requests (default 64)")
    p.add_argument("--batch", type=int, help="items per claim (default AMIFLOW_BRIDGE_BATCH_SIZE)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request, all phases (default 10)")
    p.add_argument("--lease", type=float, default=60.0, help="seconds a claim is held (default 60)")
    p.add_argument(
        "--max-wait",
        type=float,
        default=60.0,
        help="without --follow: stop when the next retry is further away than this (default 60 s)",
    )


def _run(args: argparse.Namespace, settings: Settings) -> int:
    sink: Sink
    if args.sink == "email":  # e-bills: their own outbox channel, a few SMTP sessions (docs/bills.md)
        sink = make_email_sink(settings, connections=min(args.concurrency, 8), timeout_s=args.timeout)
    else:
        sink = make_sink(
            settings, args.sink, out=args.out, fmt=args.format, concurrency=args.concurrency, timeout_s=args.timeout
        )
    config = DispatchConfig(
        batch_size=args.batch or settings.bridge_batch_size,
        batches_in_flight=max(2, -(-args.concurrency * 2 // (args.batch or settings.bridge_batch_size))),
        lease_s=args.lease,
        request_timeout_s=args.timeout,
        retry_base_s=settings.bridge_retry_base_s,
        retry_max_s=settings.bridge_retry_max_s,
        follow=args.follow,
        max_wait_s=args.max_wait,
        channel="email" if args.sink == "email" else "billing",
    )
    db = open_database(settings)
    db.close()
    dispatcher = Dispatcher(db.url, sink, config)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, dispatcher.stop)
        await dispatcher.run()

    asyncio.run(main())
    s = dispatcher.stats
    left = s.remaining
    print(
        f"bridge: delivered {s.delivered}, rejected {s.rejected}, failed attempts {s.retried}"
        + (f"; outbox now pending {left.pending}, rejected {left.rejected}, delivered {left.delivered}" if left else "")
    )
    if left and left.rejected:
        print("bridge: rejected items are kept; see 'amiflow bridge failed'", file=sys.stderr)
    return 0 if left is None or left.pending == 0 else 3


def _failed_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit", type=int, default=1000)


def _failed(args: argparse.Namespace, settings: Settings) -> int:
    db = open_database(settings)
    try:
        with db.connect() as conn:
            items = list_failed(conn, limit=args.limit)
    finally:
        db.close()
    if not items:
        print("no rejected items")
        return 0
    print(f"{'ID':>10}  {'KIND':<20} {'KEY':<40} {'ACCOUNT':<16} {'TRIES':>5} {'CODE':>4}  REASON")
    for it in items:
        reason = (it.last_error or "").replace("\n", " ")[:120]
        print(
            f"{it.id:>10}  {it.kind:<20} {it.idempotency_key:<40} {it.account or '-':<16} {it.attempts:>5} "
            f"{it.response_code or '-':>4}  {reason}"
        )
    return 0


def _retry_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("ids", type=int, nargs="*", metavar="ID", help="rejected outbox item ids (see 'bridge failed')")
    p.add_argument("--all", action="store_true", help="re-queue every rejected item")


def _retry(args: argparse.Namespace, settings: Settings) -> int:
    if not args.ids and not args.all:
        raise ConfigError("give one or more outbox ids, or --all")
    db = open_database(settings)
    try:
        with db.connect() as conn:
            done = requeue(conn, None if args.all else args.ids)
    finally:
        db.close()
    missing = sorted(set(args.ids) - set(done))
    if done:
        print(f"re-queued {len(done)} item(s): {' '.join(map(str, done[:50]))}{' ...' if len(done) > 50 else ''}")
    if missing:
        raise StorageError(f"not rejected (or unknown), nothing done: {' '.join(map(str, missing))}")
    return 0


def _import_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", type=Path, metavar="FILE.csv", help="payments or balance statements (see docs/bridge.md)")


def _import(args: argparse.Namespace, settings: Settings) -> int:
    try:
        text = args.file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"{args.file}: cannot read ({exc.strerror})") from None
    db = open_database(settings)
    try:
        with db.connect() as conn:
            try:
                report = import_csv(conn, text, window=billing_window(settings))
            except ValueError as exc:
                raise ConfigError(f"{args.file}: {exc}") from None
    finally:
        db.close()
    print(
        f"{args.file}: {report.kind}: {report.created} new, {report.duplicates} already known,"
        f" {report.conflicts} conflicting, {len(report.errors) - report.conflicts} invalid"
    )
    for line, message in report.errors[:100]:
        print(f"{args.file}:{line}: {message}", file=sys.stderr)
    return 1 if report.errors else 0


BRIDGE_RUN = Command(
    help="dispatch the outbox to billing until drained (or forever with --follow)",
    add_arguments=_run_arguments,
    run=_run,
)
BRIDGE_FAILED = Command(
    help="list outbox items billing rejected (kept for an operator)", add_arguments=_failed_arguments, run=_failed
)
BRIDGE_RETRY = Command(help="re-queue rejected outbox items", add_arguments=_retry_arguments, run=_retry)
PAYMENTS_IMPORT = Command(
    help="import payments or balance statements from a CSV file", add_arguments=_import_arguments, run=_import
)


# -- arrears report, disconnect plan|run ----------------------------------------------------------------------------


def _when(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--now {text!r}: expected ISO 8601 with an offset, e.g. 2026-03-10T15:00:00Z") from None
    if dt.tzinfo is None:
        raise ConfigError(f"--now {text!r}: give an offset or Z")
    return dt


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ruleset", help="rule set id (us_tx, eu_de) or TOML file; default AMIFLOW_DISCONNECT_RULESET")
    p.add_argument("--now", help="decide as of this ISO 8601 time (default: now)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _plan_args(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--forecast-min", type=float, help="forecast minimum temperature (C) for the next 24 h")
    p.add_argument("--forecast-max", type=float, help="forecast maximum temperature (C) for the next 24 h")


def _report_args(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--top", type=int, default=20, help="how many accounts (default 20)")


def _forecast(args: argparse.Namespace) -> tuple[float, float] | None:
    lo, hi = args.forecast_min, args.forecast_max
    if (lo is None) != (hi is None):
        raise ConfigError("give both --forecast-min and --forecast-max, or neither (weather unknown)")
    return None if lo is None or hi is None else (lo, hi)


def _open(settings: Settings, args: argparse.Namespace) -> tuple[Database, RuleSet]:
    ruleset = load_ruleset(args.ruleset or settings.disconnect_ruleset)
    return open_database(settings), ruleset


def _run_report(args: argparse.Namespace, settings: Settings) -> int:
    db, rs = _open(settings, args)
    now = _when(args.now)
    with db, db.connect() as conn:
        top = riskiest_accounts(conn, rs, now.astimezone(ZoneInfo(rs.timezone)).date(), top=args.top)
    rows: list[dict[str, Any]] = [
        {
            "account": s.account,
            "score": s.score,
            "overdue": str(a.overdue_amount) if a else "0",
            "features": {k: getattr(s.features, k) for k in s.contributions},
            "contributions": dict(s.contributions),
        }
        for s, a in top
    ]
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    print(f"{'account':<16} {'score':>6} {'overdue':>10} {'dpd':>4} {'ratio':>6} {'late':>4} {'part':>4} {'cons':>6}")
    for r in rows:
        f = r["features"]
        ratio = "-" if f["overdue_ratio"] is None else f"{f['overdue_ratio']:.2f}"
        cons = "-" if f["consumption_change"] is None else f"{f['consumption_change']:+.0%}"
        print(
            f"{r['account']:<16} {r['score']:>6.1f} {r['overdue']:>10} {f['days_past_due']:>4} {ratio:>6}"
            f" {f['late_payments_12m']:>4} {f['partial_payments_12m']:>4} {cons:>6}"
        )
    return 0


def _plan(args: argparse.Namespace, settings: Settings, *, issue: bool) -> int:
    db, rs = _open(settings, args)
    now = _when(args.now)
    forecast = _forecast(args)
    with db, db.connect() as conn:
        done = run_collections(conn, rs, settings, now=now, forecast_c=forecast, issue=issue)
    summary = _summary(rs, now, done)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_plan(summary)
    return 0


def _summary(rs: RuleSet, now: datetime, done: CollectionsRun) -> dict[str, Any]:
    return {
        "ruleset": {"id": rs.id, "version": rs.version},
        "now": now.isoformat(),
        "prepaid_updated": len(done.prepaid_updates),
        "notices": [{"account": n.account, "type": n.type, "debt": n.debt_ref} for n in done.notices],
        "decisions": [
            {
                "id": i.decision_id,
                "account": i.account,
                "meter": i.meter,
                "allowed": i.decision.allowed,
                "rules": list(i.decision.deciding_rules) if not i.decision.allowed else [],
                "command": str(i.command_id) if i.command_id else None,
            }
            for i in done.decisions
        ],
        "reconnects_scheduled": len(done.reconnects),
        "commands": [
            {"id": str(o.id), "meter": o.meter, "action": o.action, "state": o.state, "relay": o.relay}
            | {"error": o.error}
            for o in done.commands
        ],
    }


def _print_plan(s: dict[str, Any]) -> None:
    print(f"rule set {s['ruleset']['id']} {s['ruleset']['version']} at {s['now']}")
    print(f"notices queued: {len(s['notices'])}")
    for n in s["notices"]:
        print(f"  {n['account']:<16} {n['type']}")
    print(f"decisions: {len(s['decisions'])} ({sum(d['allowed'] for d in s['decisions'])} allowed)")
    for d in s["decisions"]:
        verdict = "ALLOWED" if d["allowed"] else "blocked: " + ", ".join(d["rules"])
        print(f"  #{d['id']:<6} {d['account']:<16} {d['meter']:<16} {verdict}")
    for c in s["commands"]:
        print(f"  command {c['action']} {c['meter']}: {c['state']} (relay {c['relay']}) {c['error'] or ''}")


ARREARS_REPORT = Command(
    help="the accounts most at risk of arrears, with their feature values",
    add_arguments=_report_args,
    run=_run_report,
)
DISCONNECT_PLAN = Command(
    help="send due reminders, evaluate arrears against the policy and record the decisions",
    add_arguments=_plan_args,
    run=lambda args, settings: _plan(args, settings, issue=False),
)
DISCONNECT_RUN = Command(
    help="plan, then issue allowed disconnects and due reconnects to the meters and confirm the relay state",
    add_arguments=_plan_args,
    run=lambda args, settings: _plan(args, settings, issue=True),
)
