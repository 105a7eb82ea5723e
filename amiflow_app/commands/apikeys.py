"""``amiflow api-keys create|list|revoke``: the stored keys of the HTTP API (argparse and the glue; the work is in
billing_bridge.api_keys, the roles in docs/security.md)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from amiflow.db import Database, open_database
from amiflow.errors import ConfigError
from amiflow.settings import Settings
from amiflow_app.command import Command
from billing_bridge.api_keys import Role, create_key, list_keys, revoke_key

__all__ = ["API_KEYS_CREATE", "API_KEYS_LIST", "API_KEYS_REVOKE"]


def _open(settings: Settings) -> Database:
    return open_database(settings)


def _when(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO 8601 time with offset, got {text!r}") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a UTC offset, e.g. 2027-01-01T00:00:00Z")
    return value


def _create_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", required=True, help="a unique name, e.g. billing-prod or grafana")
    parser.add_argument("--role", required=True, choices=[r.value for r in Role])
    parser.add_argument("--account", help="the one account a customer key opens (customer role only)")
    parser.add_argument("--expires", type=_when, metavar="ISO", help="the key stops working at this time")


def _create(args: argparse.Namespace, settings: Settings) -> int:
    with _open(settings) as db, db.connect() as conn:
        record, key = create_key(conn, args.name, args.role, account=args.account, expires_at=args.expires)
    scope = f" for account {record.account}" if record.account else ""
    print(f"API key {record.name} ({record.role.value}{scope}) created; it is shown only now:", file=sys.stderr)
    print(key)
    return 0


def _list_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON lines")


def _list(args: argparse.Namespace, settings: Settings) -> int:
    with _open(settings) as db, db.connect() as conn:
        keys = list_keys(conn)
    now = datetime.now(UTC)
    if args.json:
        for k in keys:
            print(json.dumps({"name": k.name, "role": k.role.value, "account": k.account, "prefix": k.prefix,
                              "state": k.state(now), "created_at": k.created_at.isoformat(),
                              "expires_at": k.expires_at.isoformat() if k.expires_at else None}))  # fmt: skip
        return 0
    print(f"{'name':<24} {'role':<9} {'state':<8} {'prefix':<11} {'expires':<26} account")
    for k in keys:
        expires = k.expires_at.isoformat() if k.expires_at else "-"
        print(f"{k.name:<24} {k.role.value:<9} {k.state(now):<8} {k.prefix:<11} {expires:<26} {k.account or '-'}")
    print(f"{len(keys)} key(s)")
    return 0


def _revoke_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the key's name (see `amiflow api-keys list`)")


def _revoke(args: argparse.Namespace, settings: Settings) -> int:
    with _open(settings) as db, db.connect() as conn:
        if not revoke_key(conn, args.name):
            raise ConfigError(f"no active API key named {args.name!r} (see `amiflow api-keys list`)")
    print(f"API key {args.name} revoked: it opens nothing from now on")
    return 0


API_KEYS_CREATE = Command("store a new HTTP API key of a role and print it once", _create_args, _create)
API_KEYS_LIST = Command("list the stored HTTP API keys (never the keys themselves)", _list_args, _list)
API_KEYS_REVOKE = Command("revoke an HTTP API key at once", _revoke_args, _revoke)
