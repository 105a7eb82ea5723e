"""``amiflow accounts import|list|show``: the customers behind the accounts - name, postal address, e-mail and the
e-bill opt-in (amiflow.db.accounts) - with what billing last stated and the account's e-bills.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from amiflow.db import open_database
from amiflow.db.accounts import REQUIRED_CONTACT_CSV, get_contact, import_contacts_csv, list_contacts
from amiflow.errors import ConfigError
from amiflow.settings import Settings
from amiflow_app.command import Command, read_csv_file

__all__ = ["ACCOUNTS_IMPORT", "ACCOUNTS_LIST", "ACCOUNTS_SHOW"]


def _import_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help=f"CSV with header {','.join(REQUIRED_CONTACT_CSV)}[,address]")


def _import(args: argparse.Namespace, settings: Settings) -> int:
    text = read_csv_file(args.file)
    with open_database(settings) as db, db.connect() as conn:
        count = import_contacts_csv(conn, text, source=str(args.file))
    print(f"imported {count} account contact(s) from {args.file}")
    return 0


def _list_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON lines")


def _list(args: argparse.Namespace, settings: Settings) -> int:
    with open_database(settings) as db, db.connect() as conn:
        contacts = list_contacts(conn)
    if args.json:
        for c in contacts:
            print(json.dumps(asdict(c), default=str, ensure_ascii=False))
        return 0
    print(f"{'account':<16} {'e-bill':<8} {'e-mail':<32} name")
    for c in contacts:
        ebill = "bounced" if c.ebill and c.email_status != "ok" else "yes" if c.ebill else "no"
        print(f"{c.account:<16} {ebill:<8} {c.email or '-':<32} {c.name}")
    print(f"{len(contacts)} account(s)")
    return 0


def _show_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("account")


def _show(args: argparse.Namespace, settings: Settings) -> int:
    with open_database(settings) as db, db.connect() as conn:
        contact = get_contact(conn, args.account)
        balance = conn.execute(
            "SELECT balance, currency, due_date, balance_as_of FROM amiflow.accounts WHERE account = %s",
            (args.account,),
        ).fetchone()
        meters = [r[0] for r in conn.execute("SELECT name FROM amiflow.meters WHERE account = %s ORDER BY name",
                                             (args.account,))]  # fmt: skip
        ebills = conn.execute(
            "SELECT bill_id, version, email, state, attempts, last_error FROM amiflow.v_ebills WHERE account = %s"
            " ORDER BY id DESC LIMIT 12",
            (args.account,),
        ).fetchall()
    if contact is None and balance is None and not meters:
        raise ConfigError(f"unknown account {args.account!r} (see 'amiflow accounts list')")
    out: dict[str, Any] = {"account": args.account, "contact": asdict(contact) if contact else None, "meters": meters}
    if balance is not None:
        out["billing"] = {"balance": None if balance[0] is None else str(balance[0]), "currency": balance[1],
                          "due_date": balance[2], "as_of": balance[3]}  # fmt: skip
    out["ebills"] = [
        {"bill_id": b, "version": v, "email": e, "state": s, "attempts": a, "last_error": err}
        for b, v, e, s, a, err in ebills
    ]
    print(json.dumps(out, indent=2, default=str, ensure_ascii=False))
    return 0


ACCOUNTS_IMPORT = Command("import account contacts and e-bill opt-ins from CSV", _import_args, _import)
ACCOUNTS_LIST = Command("list the account contacts and their e-bill opt-in", _list_args, _list)
ACCOUNTS_SHOW = Command("show one account: contact, billing's balance, meters and e-bills", _show_args, _show)
