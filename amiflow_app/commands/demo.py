"""``amiflow demo``: arguments, SIGTERM handling and the printed summary around :func:`amiflow_app.demo.run_demo`."""

from __future__ import annotations

import argparse
import contextlib
import secrets
import shlex
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from pydantic import SecretStr

from amiflow.errors import ConfigError
from amiflow.settings import Settings
from amiflow_app.command import Command
from amiflow_app.demo.plan import format_summary
from amiflow_app.demo.run import QUICK_POLL_DAYS, run_demo

__all__ = ["DEMO"]


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--meters", type=int, help="simulated MQTT meters (default 200; --quick 40)")
    parser.add_argument("--days", type=int, help="simulated days, ending at the billed month's end (default 30)")
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="data, report and summary (demo-out)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the load model and the faults (default 1)")
    parser.add_argument(
        "--quick", action="store_true", help="a shorter setting for CI: 40 MQTT meters, polled meters for 2 days"
    )
    parser.add_argument(
        "--serve", action="store_true", help="afterwards keep serving the API and the live dashboard until Ctrl-C"
    )


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the clean-up below runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    meters = args.meters if args.meters is not None else (40 if args.quick else 200)
    days = args.days if args.days is not None else 30
    if days < 1:
        raise ConfigError(f"--days {days}: must be at least 1")
    try:
        with _sigterm_as_interrupt():
            summary = run_demo(
                settings,
                meters=meters,
                days=days,
                out=args.out.resolve(),
                seed=args.seed,
                poll_days=QUICK_POLL_DAYS if args.quick else days,
            )
    except KeyboardInterrupt:
        print("amiflow demo: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    print(format_summary(summary), flush=True)
    print(_way_in(settings, args.out, summary.period), flush=True)
    return _serve(settings, args.out.resolve()) if args.serve else 0


def _serve(settings: Settings, out: Path) -> int:
    """Serve the API with the dashboard on the demo's database until Ctrl-C (or SIGTERM)."""
    from amiflow_app.serve import Service

    update: dict[str, object] = {"data_dir": out / "data"}
    how = "log in with AMIFLOW_API_TOKEN"
    if settings.api_token is None:  # a token of this run only, so the demo's API is never open
        token = secrets.token_urlsafe(18)
        update["api_token"] = SecretStr(token)
        how = f"log in with the token {token} (made for this run; set AMIFLOW_API_TOKEN to choose one)"
    service = Service(settings.model_copy(update=update), ["api"])
    try:
        with _sigterm_as_interrupt():
            service.start()
            print(f"amiflow demo: the live dashboard is at {service.url}/dashboard; {how}. Ctrl-C stops.", flush=True)
            while not service.wait(0.5):  # until Ctrl-C, or until the service dies by itself
                pass
    except KeyboardInterrupt:
        pass
    finally:
        clean = service.stop()
    print("amiflow demo: stopped serving", flush=True)
    return 0 if clean else 1


def _way_in(settings: Settings, out: Path, period: str) -> str:
    """How to reach the demo's data afterwards with the other commands."""
    if settings.database_url is not None:
        where, flag = "in the database of AMIFLOW_DATABASE_URL", ""
    else:
        where, flag = f"in {out / 'data'}", f" --data-dir {shlex.quote(str(out / 'data'))}"
    return (
        f"The demo's data stays {where}; the other commands reach it, for example:\n"
        f"  amiflow{flag} meters list\n"
        f"  amiflow{flag} tariffs list\n"
        f"  amiflow{flag} report --period {period} --out {shlex.quote(str(out / 'report-again'))}"
    )


DEMO = Command(help="run the whole head-end on simulated meters and print a summary", add_arguments=_add_arguments,
               run=_run)  # fmt: skip
