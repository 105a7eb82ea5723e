"""The ``amiflow`` console script.

The shell registers every subcommand here; each lives in ``amiflow_app.commands`` (or with the demo, report and serve
parts of the shell) and is imported only when used, so ``amiflow --help`` is fast and a missing optional part does not
break the others. The table below is the whole command surface (CONTRACT.md).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

import psycopg

from amiflow.errors import AmiflowError, ConfigError
from amiflow.settings import load_settings
from amiflow_app.command import Command

__all__ = ["COMMANDS", "main", "one_line"]

# command words -> "module:attribute" of a Command
COMMANDS: dict[tuple[str, ...], str] = {
    ("demo",): "amiflow_app.commands.demo:DEMO",
    ("report",): "amiflow_app.commands.report:REPORT",
    ("serve",): "amiflow_app.commands.serve:SERVE",
    ("db", "migrate"): "amiflow_app.commands.db:MIGRATE",
    ("db", "status"): "amiflow_app.commands.db:STATUS",
    ("meters", "add"): "amiflow_app.commands.db:METERS_ADD",
    ("meters", "list"): "amiflow_app.commands.db:METERS_LIST",
    ("meters", "show"): "amiflow_app.commands.db:METERS_SHOW",
    ("meters", "import"): "amiflow_app.commands.db:METERS_IMPORT",
    ("ingest", "mqtt"): "amiflow_app.commands.ingest:INGEST_MQTT",
    ("poll",): "amiflow_app.commands.ingest:POLL",
    ("commission",): "amiflow_app.commands.ingest:COMMISSION",
    ("sim", "mqtt"): "amiflow_app.commands.sim:SIM_MQTT",
    ("sim", "modbus"): "amiflow_app.commands.sim:SIM_MODBUS",
    ("sim", "dlms"): "amiflow_app.commands.sim:SIM_DLMS",
    ("sim", "iec62056-21"): "amiflow_app.commands.sim:SIM_IEC62056_21",
    ("decode",): "amiflow_app.commands.decode:DECODE",
    ("tariffs", "import"): "amiflow_app.commands.rating:TARIFFS_IMPORT",
    ("tariffs", "list"): "amiflow_app.commands.rating:TARIFFS_LIST",
    ("tariffs", "show"): "amiflow_app.commands.rating:TARIFFS_SHOW",
    ("rate",): "amiflow_app.commands.rating:RATE",
    ("vee", "run"): "amiflow_app.commands.rating:VEE_RUN",
    ("bill", "run"): "amiflow_app.commands.rating:BILL_RUN",
    ("bridge", "run"): "amiflow_app.commands.billing:BRIDGE_RUN",
    ("bridge", "failed"): "amiflow_app.commands.billing:BRIDGE_FAILED",
    ("bridge", "retry"): "amiflow_app.commands.billing:BRIDGE_RETRY",
    ("payments", "import"): "amiflow_app.commands.billing:PAYMENTS_IMPORT",
    ("arrears", "report"): "amiflow_app.commands.billing:ARREARS_REPORT",
    ("disconnect", "plan"): "amiflow_app.commands.billing:DISCONNECT_PLAN",
    ("disconnect", "run"): "amiflow_app.commands.billing:DISCONNECT_RUN",
}


def _load(target: str) -> Command | None:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return None
        raise
    command = getattr(module, attr, None)
    return command if isinstance(command, Command) else None


def _build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="amiflow", description="AMI head-end and metering service")
    parser.add_argument("--config", type=Path, help="TOML settings file (the environment overrides it)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    groups: dict[tuple[str, ...], argparse._SubParsersAction[argparse.ArgumentParser]] = {}
    groups[()] = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Only the command actually named is imported; the others get a placeholder subparser for --help.
    words = [a for a in argv if not a.startswith("-")]
    for key, target in COMMANDS.items():
        parent: tuple[str, ...] = ()
        for i, word in enumerate(key[:-1]):
            prefix = key[: i + 1]
            if prefix not in groups:
                sub = groups[parent].add_parser(word, help=f"{word} commands")
                groups[prefix] = sub.add_subparsers(dest=f"command_{i + 1}", metavar="SUBCOMMAND")
            parent = prefix
        chosen = tuple(words[: len(key)]) == key
        command = _load(target) if chosen else None
        sub = groups[parent].add_parser(key[-1], help=command.help if command else None)
        sub.set_defaults(_target=target, _key=key)
        if command is not None:
            command.add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser(args_list)
    args = parser.parse_args(args_list)
    target = getattr(args, "_target", None)
    if target is None:
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2) if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    command = _load(target)
    name = " ".join(args._key)
    if command is None:
        print(f"amiflow {name}: not built yet in this version", file=sys.stderr)
        return 2
    try:
        settings = load_settings(args.config)
        return command.run(args, settings)
    except ConfigError as exc:
        return _fail(name, exc, 2, args.verbose)
    except AmiflowError as exc:
        return _fail(name, exc, 1, args.verbose)
    except psycopg.OperationalError as exc:
        # a safety net: the database layer translates these, but a failure deep in a service must still read as one
        return _fail(name, f"database unavailable: {exc}", 1, args.verbose, exc)
    except OSError as exc:  # a file, a port or a device the user named: missing, refused or not permitted
        return _fail(name, exc, 1, args.verbose)
    except KeyboardInterrupt:
        return 130


def one_line(message: object) -> str:
    """``message`` as one line: libpq and others put hints on further lines."""
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


def _fail(name: str, message: object, code: int, verbose: int, exc: BaseException | None = None) -> int:
    """Print the one-line error of an expected failure; ``-v`` adds the traceback."""
    cause = exc if exc is not None else message if isinstance(message, BaseException) else None
    if verbose and cause is not None:
        traceback.print_exception(cause, file=sys.stderr)
    print(f"amiflow {name}: {one_line(message)}", file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
