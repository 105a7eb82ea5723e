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

__all__ = ["AUDIENCES", "COMMANDS", "ENTRIES", "GROUPS", "main", "one_line"]

# The whole command surface (CONTRACT.md): words | audience | amiflow_app.commands module:Command | one-line summary.
# The summaries are static so that ``amiflow --help`` lists every command without importing any.
_TABLE = """
demo            | operator | demo:DEMO               | run the whole head-end on simulated meters, print a summary
report          | operator | report:REPORT           | the HTML report of a period; 'report collection': collection KPIs
serve           | operator | serve:SERVE             | run ingest, poller, bridge, collections and the API, supervised
db migrate      | operator | db:MIGRATE              | apply the schema migrations (idempotent)
db status       | operator | db:STATUS               | show the schema version and the storage features in use
db maintain     | operator | db:MAINTAIN             | keep storage healthy: pack days, refresh rollups, failing jobs
meters add      | engineer | db:METERS_ADD           | register one meter
meters list     | engineer | db:METERS_LIST          | list the registered meters
meters show     | engineer | db:METERS_SHOW          | show one registered meter
meters import   | engineer | db:METERS_IMPORT        | register meters from a CSV file
meters set-key  | engineer | db:METERS_SET_KEY       | store or remove an M-Bus meter's AES key (never printed)
meters move-in  | billing  | db:METERS_MOVE_IN       | record a move-in: an account is served through a meter from a day
meters move-out | billing  | db:METERS_MOVE_OUT      | record a move-out: the meter's open service period ends on a day
meters credentials | operator | db:METERS_CREDENTIALS | the fleet's MQTT passwords as a Mosquitto password file
accounts import | billing  | accounts:ACCOUNTS_IMPORT | import account contacts (name, address, e-mail, e-bill opt-in)
accounts list   | billing  | accounts:ACCOUNTS_LIST  | list the account contacts and their e-bill opt-in
accounts show   | billing  | accounts:ACCOUNTS_SHOW  | one account: contact, billing's balance, meters, e-bills
ingest mqtt     | operator | ingest:INGEST_MQTT      | run one MQTT ingest worker (several share the stream)
ingest wmbus    | operator | ingest_wmbus:INGEST_WMBUS | receive wireless M-Bus frames from stdin, TCP or a stick
poll            | operator | ingest:POLL             | poll DLMS, IEC 62056-21 and Modbus meters; read SML, P1 meters
commission      | engineer | ingest:COMMISSION       | identify, test-read and register a meter (commissioning sheet)
sim mqtt        | engineer | sim:SIM_MQTT            | simulate a fleet of MQTT meters publishing to a broker
sim modbus      | engineer | sim_polled:SIM_MODBUS   | simulate Modbus TCP/RTU meters
sim dlms        | engineer | sim_polled:SIM_DLMS     | simulate DLMS/COSEM meters (TCP wrapper or HDLC)
sim iec62056-21 | engineer | sim_polled:SIM_IEC62056_21 | simulate IEC 62056-21 mode C meters
sim sml         | engineer | sim_push:SIM_SML        | simulate an SML push meter (eHZ, Itron or EasyMeter shape)
sim mbus        | engineer | sim_mbus:SIM_MBUS       | simulate an M-Bus segment (heat, water, gas, electricity meters)
sim wmbus       | engineer | sim_mbus:SIM_WMBUS      | simulate wireless M-Bus meters sending encrypted frames
decode          | engineer | decode:DECODE           | decode a captured frame, telegram or register map to JSON
tariffs import  | billing  | rating:TARIFFS_IMPORT   | import tariffs (amiflow JSON/TOML or OpenEI URDB JSON)
tariffs list    | billing  | rating:TARIFFS_LIST     | list the stored tariff versions
tariffs show    | billing  | rating:TARIFFS_SHOW     | show one stored tariff version as JSON
rate            | billing  | rating:RATE             | rate a usage CSV offline with a tariff file and print bill JSON
vee run         | billing  | rating:VEE_RUN          | validate and estimate the readings of a period (VEE)
bill run        | billing  | rating:BILL_RUN         | rate every meter for a period and store the bills
bill render     | billing  | bills:BILL_RENDER       | render a month's bills as customer PDFs or HTML pages
bill send       | billing  | bills:BILL_SEND         | queue bill-ready e-mails (with the PDF) for opted-in accounts
bridge run      | billing  | billing:BRIDGE_RUN      | deliver queued bills and notices to the billing system
bridge failed   | billing  | billing:BRIDGE_FAILED   | list outbox items the billing system rejected
bridge retry    | billing  | billing:BRIDGE_RETRY    | queue rejected outbox items again
payments import | billing  | billing:PAYMENTS_IMPORT | record payments from a CSV file
arrears report  | billing  | billing:ARREARS_REPORT  | the accounts most at risk of arrears, with their risk features
disconnect plan | billing  | billing:DISCONNECT_PLAN | send due reminders and record the policy's decisions; no relay
disconnect run  | billing  | billing:DISCONNECT_RUN  | plan, then switch relays: allowed disconnects and due reconnects
plans create    | billing  | plans:PLANS_CREATE      | split an overdue balance into a down payment and installments
plans list      | billing  | plans:PLANS_LIST        | list installment plans
plans show      | billing  | plans:PLANS_SHOW        | one plan's installments, what each was paid, its standing
usage export    | billing  | usage:USAGE_EXPORT      | a customer's usage as a Green Button (ESPI) feed or CSV
usage insights  | billing  | usage:USAGE_INSIGHTS    | baseload, peak hours, comparisons and the best tariff of a month
usage token     | billing  | usage:USAGE_TOKEN       | print the token that opens one account's usage in the HTTP API
api-keys create | operator | apikeys:API_KEYS_CREATE | store a key of the HTTP API: operator, billing, customer, metrics
api-keys list   | operator | apikeys:API_KEYS_LIST   | list the HTTP API's stored keys (never the keys themselves)
api-keys revoke | operator | apikeys:API_KEYS_REVOKE | revoke an HTTP API key at once
"""


def _entries(table: str) -> dict[tuple[str, ...], tuple[str, str, str]]:
    out = {}
    for line in table.strip().splitlines():
        words, audience, target, summary = (part.strip() for part in line.split("|", 3))
        out[tuple(words.split())] = (audience, summary, f"amiflow_app.commands.{target}")
    return out


#: command words -> (audience, one-line summary, "module:attribute" of its Command)
ENTRIES = _entries(_TABLE)
#: command words -> "module:attribute" of its Command (CONTRACT.md's command surface)
COMMANDS: dict[tuple[str, ...], str] = {key: target for key, (_, _, target) in ENTRIES.items()}
AUDIENCES = {"engineer": "metering engineers", "operator": "operators", "billing": "billing and collections"}
GROUPS = {
    "db": "the database schema",
    "meters": "the meter registry",
    "accounts": "the account registry: customers' contact data and e-bill opt-in",
    "ingest": "acquisition workers",
    "sim": "protocol simulators for tests and HIL rigs",
    "tariffs": "stored tariffs",
    "vee": "validation, estimation and editing",
    "bill": "billing runs and bill documents",
    "bridge": "the outbox to the billing system",
    "payments": "inbound payments",
    "arrears": "overdue accounts",
    "disconnect": "disconnection and reconnection under the policy",
    "plans": "installment plans (payment arrangements)",
    "usage": "customers' usage: Green Button exports, insights and API tokens",
    "api-keys": "keys of the HTTP API and their roles",
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


def _global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML settings file (the environment overrides it)")
    parser.add_argument(
        "--data-dir", type=Path, help="folder of the embedded database, spool and reports (AMIFLOW_DATA_DIR)"
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more logging and the cause of an error (-vv: debug logging and the traceback)",
    )


def _listing() -> str:
    """The commands grouped by who uses them, for ``amiflow --help``."""
    rows: dict[str, list[tuple[str, str]]] = {audience: [] for audience in AUDIENCES}
    for key, (audience, summary, _) in ENTRIES.items():
        rows[audience].append((" ".join(key), summary))
    width = max(len(name) for names in rows.values() for name, _ in names) + 2
    out = []
    for audience, names in rows.items():
        out.append(f"commands for {AUDIENCES[audience]}:")
        out.extend(f"  {name:<{width}}{summary}" for name, summary in names)
        out.append("")
    out.append("'amiflow COMMAND --help' describes a command and its arguments.")
    return "\n".join(out)


def _command_words(argv: Sequence[str]) -> list[str]:
    """The words naming the command, after the global options (and their values) are set aside."""
    pre = argparse.ArgumentParser(add_help=False)
    _global_options(pre)
    _, rest = pre.parse_known_args(argv)
    return [a for a in rest if not a.startswith("-")]


def _add(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], name: str, description: str, listed: str | None
) -> argparse.ArgumentParser:
    """A subparser; ``listed`` None keeps it out of the parent's list (the top level is listed by audience)."""
    if listed is None:
        return subparsers.add_parser(name, description=description)
    return subparsers.add_parser(name, description=description, help=listed)


def _build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amiflow",
        description="amiflow: AMI head-end and metering service, from smart-meter traffic to bills.",
        epilog=_listing(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _global_options(parser)
    groups: dict[tuple[str, ...], argparse._SubParsersAction[argparse.ArgumentParser]] = {}
    groups[()] = parser.add_subparsers(dest="command", metavar="COMMAND", help="one of the commands listed below")
    # Only the command actually named is imported; the others get a subparser with their static summary.
    words = _command_words(argv)
    for key, (_, summary, target) in ENTRIES.items():
        parent: tuple[str, ...] = ()
        for i, word in enumerate(key[:-1]):
            prefix = key[: i + 1]
            if prefix not in groups:
                about = GROUPS.get(word, f"{word} commands")
                sub = _add(groups[parent], word, f"amiflow {word}: {about}", about if parent else None)
                groups[prefix] = sub.add_subparsers(dest=f"command_{i + 1}", metavar="SUBCOMMAND")
            parent = prefix
        chosen = tuple(words[: len(key)]) == key
        command = _load(target) if chosen else None
        about = command.help if command else summary
        sub = _add(groups[parent], key[-1], f"amiflow {' '.join(key)}: {about}", summary if parent else None)
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
        settings = load_settings(args.config, data_dir=args.data_dir)
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
    """Print the one-line error of an expected failure.

    ``-v`` adds the detail: one line per underlying cause (the OS or driver error behind it); ``-vv`` the traceback.
    """
    cause = exc if exc is not None else message if isinstance(message, BaseException) else None
    if verbose >= 2 and cause is not None:
        traceback.print_exception(cause, file=sys.stderr)
    elif verbose == 1 and cause is not None:
        for detail in _causes(cause):
            print(f"  caused by {type(detail).__name__}: {one_line(detail)}", file=sys.stderr)
    print(f"amiflow {name}: {one_line(message)}", file=sys.stderr)
    return code


def _causes(exc: BaseException) -> list[BaseException]:
    """The chain below ``exc`` (explicit ``raise ... from`` causes, else the implicit context), at most 5 deep."""
    out: list[BaseException] = []
    current = exc.__cause__ or exc.__context__
    while current is not None and len(out) < 5:
        out.append(current)
        current = current.__cause__ or current.__context__
    return out


if __name__ == "__main__":
    raise SystemExit(main())
