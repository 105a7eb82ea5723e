"""``amiflow serve``: the arguments, the signals and the exit code around :class:`amiflow_app.serve.Service`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Any

from amiflow.errors import ConfigError
from amiflow.settings import Settings
from amiflow_app.command import Command
from amiflow_app.serve import COMPONENTS, Service

__all__ = ["SERVE"]

log = logging.getLogger(__name__)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--only",
        metavar="LIST",
        help=f"run only these components, comma-separated ({','.join(COMPONENTS)}); default: all configured",
    )
    for name in COMPONENTS:
        p.add_argument(f"--no-{name}", action="store_true", help=f"do not run {name}")
    p.add_argument(
        "--restart-backoff", type=float, default=1.0, metavar="S", help="first restart delay after a crash (doubles)"
    )
    p.add_argument(
        "--stop-timeout", type=float, default=30.0, metavar="S", help="graceful stop bound in seconds (default 30)"
    )
    p.add_argument(
        "--collections-interval", type=float, default=60.0, metavar="S", help="collections job period (default 60)"
    )


def _selected(args: argparse.Namespace) -> list[str] | None:
    """The components named by --only/--no-X; None = the default set (all that are configured)."""
    excluded = {n for n in COMPONENTS if getattr(args, f"no_{n}")}
    if args.only:
        chosen = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in chosen if n not in COMPONENTS]
        if unknown:
            raise ConfigError(f"--only: unknown component {unknown[0]!r}; choose from {','.join(COMPONENTS)}")
        chosen = [n for n in chosen if n not in excluded]
    elif excluded:
        chosen = [n for n in COMPONENTS if n not in excluded]
    else:
        return None
    if not chosen:
        raise ConfigError("--only/--no-*: no component left to run")
    return chosen


def _run(args: argparse.Namespace, settings: Settings) -> int:
    for name, value in (("--restart-backoff", args.restart_backoff), ("--stop-timeout", args.stop_timeout)):
        if value <= 0:
            raise ConfigError(f"{name} {value:g}: must be positive")
    if args.collections_interval < 1:
        raise ConfigError(f"--collections-interval {args.collections_interval:g}: must be at least 1 s")
    service = Service(
        settings,
        _selected(args),
        restart_backoff_s=args.restart_backoff,
        stop_timeout_s=args.stop_timeout,
        collections_interval_s=args.collections_interval,
    )
    stop = threading.Event()
    signals: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        signals.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        service.start()
        names = ", ".join(c.name for c in service.components)
        where = f"; API at {service.url}" if service.has_api else ""
        print(f"amiflow serve: running {names}{where}", flush=True)
        while not stop.wait(0.5) and not service.wait(0):
            pass  # the signal handler sets ``stop`` (waking this wait); a dead supervisor ends the loop too
        if stop.is_set():
            log.warning("amiflow serve: signal %d, stopping", signals[0])
        clean = service.stop()
    finally:
        service.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not clean:
        # Something is stuck in a thread (a hung query or relay command): exiting normally would wait for it
        # forever (thread pools are joined at exit), so leave now; the work is redone or re-leased on the next start.
        print("amiflow serve: stopped, not cleanly (see the log)", file=sys.stderr, flush=True)
        logging.shutdown()
        os._exit(1)
    print("amiflow serve: stopped", flush=True)
    return 0 if stop.is_set() else 1


SERVE = Command(
    help="run ingest, the poller, the bridge dispatcher, the collections job and the HTTP API, supervised",
    add_arguments=_add_arguments,
    run=_run,
)
