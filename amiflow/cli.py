"""The ``amiflow`` console script.

Each subcommand lives with the package that owns it and is imported only when used, so ``amiflow --help`` is fast
and a missing optional part does not break the others. The table below is the whole command surface (CONTRACT.md).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from amiflow.commands import Command
from amiflow.errors import AmiflowError, ConfigError
from amiflow.settings import load_settings

__all__ = ["COMMANDS", "main"]

# command words -> "module:attribute" of a Command
COMMANDS: dict[tuple[str, ...], str] = {
    ("demo",): "amiflow.demo:DEMO",
    ("report",): "amiflow.report:REPORT",
    ("serve",): "amiflow.serve:SERVE",
    ("db", "migrate"): "amiflow.db.cli:MIGRATE",
    ("db", "status"): "amiflow.db.cli:STATUS",
    ("meters", "add"): "amiflow.db.cli:METERS_ADD",
    ("meters", "list"): "amiflow.db.cli:METERS_LIST",
    ("meters", "show"): "amiflow.db.cli:METERS_SHOW",
    ("meters", "import"): "amiflow.db.cli:METERS_IMPORT",
    ("ingest", "mqtt"): "ingest.cli:INGEST_MQTT",
    ("poll",): "ingest.poller:POLL",
    ("commission",): "ingest.commission:COMMISSION",
    ("sim", "mqtt"): "simulators.mqtt_fleet:SIM_MQTT",
    ("sim", "modbus"): "simulators.modbus:SIM_MODBUS",
    ("sim", "dlms"): "simulators.dlms:SIM_DLMS",
    ("sim", "iec62056-21"): "simulators.iec62056_21:SIM_IEC62056_21",
    ("decode",): "protocols.decode:DECODE",
    ("tariffs", "import"): "rating.cli:TARIFFS_IMPORT",
    ("tariffs", "list"): "rating.cli:TARIFFS_LIST",
    ("tariffs", "show"): "rating.cli:TARIFFS_SHOW",
    ("rate",): "rating.cli:RATE",
    ("vee", "run"): "rating.vee.cli:VEE_RUN",
    ("bill", "run"): "rating.billing_run:BILL_RUN",
    ("bridge", "run"): "billing_bridge.cli:BRIDGE_RUN",
    ("bridge", "failed"): "billing_bridge.cli:BRIDGE_FAILED",
    ("bridge", "retry"): "billing_bridge.cli:BRIDGE_RETRY",
    ("payments", "import"): "billing_bridge.cli:PAYMENTS_IMPORT",
    ("arrears", "report"): "billing_bridge.disconnect_cli:ARREARS_REPORT",
    ("disconnect", "plan"): "billing_bridge.disconnect_cli:DISCONNECT_PLAN",
    ("disconnect", "run"): "billing_bridge.disconnect_cli:DISCONNECT_RUN",
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
        print(f"amiflow {name}: {exc}", file=sys.stderr)
        return 2
    except AmiflowError as exc:
        print(f"amiflow {name}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
