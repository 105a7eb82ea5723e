"""``amiflow bridge run|failed|retry`` and ``amiflow payments import``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from amiflow.db import open_database
from amiflow.errors import ConfigError, StorageError
from amiflow.settings import Settings
from amiflow_app.command import Command
from billing_bridge.dispatcher import DispatchConfig, Dispatcher
from billing_bridge.payments import import_csv
from billing_bridge.sinks import CimSink, FileDropSink, Sink, WebhookSink
from billing_bridge.store import list_failed, requeue

__all__ = ["BRIDGE_FAILED", "BRIDGE_RETRY", "BRIDGE_RUN", "PAYMENTS_IMPORT", "build_dispatcher", "make_sink"]


def _run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--follow", action="store_true", help="keep running and deliver new items as they are queued")
    p.add_argument(
        "--sink",
        choices=("webhook", "cim", "file"),
        default="webhook",
        help="webhook: JSON to AMIFLOW_BILLING_URL (default); cim: IEC 61968-9 XML to the same URL; file: --out DIR",
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


def make_sink(
    settings: Settings,
    kind: str,
    *,
    out: Path | None = None,
    fmt: str = "jsonl",
    concurrency: int = 64,
    timeout_s: float = 10.0,
) -> Sink:
    """The sink named ``kind`` from the settings; ConfigError names what is missing."""
    secret = settings.billing_secret.get_secret_value().encode() if settings.billing_secret else None
    if kind == "file":
        if out is None:
            raise ConfigError("--sink file needs --out DIR")
        return FileDropSink(out, fmt="csv" if fmt == "csv" else "jsonl", secret=secret)
    if not settings.billing_url:
        raise ConfigError(
            "AMIFLOW_BILLING_URL is not set, so bills stay in the outbox; set it, or use --sink file --out DIR"
        )
    if secret is None:
        raise ConfigError("AMIFLOW_BILLING_SECRET is not set: webhook bodies must be signed (HMAC-SHA256)")
    cls = CimSink if kind == "cim" else WebhookSink
    return cls(settings.billing_url, secret, concurrency=concurrency, timeout_s=timeout_s)


def build_dispatcher(settings: Settings, url: str, *, follow: bool = True) -> Dispatcher | None:
    """The webhook dispatcher ``amiflow serve`` runs (``await d.run()``, ``d.stop()``); None when
    AMIFLOW_BILLING_URL is unset (bills stay in the outbox)."""
    if not settings.billing_url:
        return None
    config = DispatchConfig(
        batch_size=settings.bridge_batch_size,
        retry_base_s=settings.bridge_retry_base_s,
        retry_max_s=settings.bridge_retry_max_s,
        follow=follow,
    )
    return Dispatcher(url, make_sink(settings, "webhook"), config)


def _run(args: argparse.Namespace, settings: Settings) -> int:
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
                report = import_csv(conn, text)
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
