"""The account registry: who an account's customer is (name, postal address, e-mail) and whether they take their
bills by e-mail (``amiflow.account_contacts``, migration 0012), imported from CSV like the meters.

CSV header: at least ``account,name,email,ebill``; ``address`` optional (its lines separated by newlines inside a
quoted field, or by ``;``). ``ebill`` is yes/no (also true/false, 1/0, empty = no); opting in needs an e-mail.
Every row is checked first; the first bad row is a ConfigError naming the line, and nothing is imported. An import
that changes an account's e-mail clears a bounce recorded for the old one.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from amiflow.errors import ConfigError

__all__ = ["REQUIRED_CONTACT_CSV", "AccountContact", "get_contact", "import_contacts_csv", "list_contacts"]

REQUIRED_CONTACT_CSV = ("account", "name", "email", "ebill")
# One @, no spaces or angle brackets, a dot in the domain: what a mail server will take as a mailbox (RFC 5321's
# full grammar is not needed to refuse typos; the server's answer decides the rest, recorded as a bounce).
_EMAIL = re.compile(r"[^@\s<>(),;:\"\[\]]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+")
_YES = {"yes": True, "y": True, "true": True, "1": True, "no": False, "n": False, "false": False, "0": False, "": False}


@dataclass(frozen=True, slots=True)
class AccountContact:
    """One account's customer; ``email_status`` is ``bounced`` after a permanent refusal of that address."""

    account: str
    name: str
    email: str | None = None
    address: tuple[str, ...] = ()
    ebill: bool = False
    email_status: str = "ok"
    bounced_at: datetime | None = None
    bounce_reason: str | None = None

    def check(self) -> None:
        """Raise ConfigError naming the account and the first wrong field."""
        if not 1 <= len(self.account) <= 128 or "\x00" in self.account:
            raise ConfigError(f"account {self.account!r}: the id must be 1-128 characters")
        if any("\x00" in v for v in (self.name, self.email or "", *self.address)):
            raise ConfigError(f"account {self.account}: a NUL character in the name, e-mail or address")
        if not 1 <= len(self.name) <= 200:
            raise ConfigError(f"account {self.account}: the name must be 1-200 characters")
        if self.email is not None and (len(self.email) > 254 or not _EMAIL.fullmatch(self.email)):
            raise ConfigError(f"account {self.account}: {self.email!r} is not an e-mail address")
        if self.ebill and self.email is None:
            raise ConfigError(f"account {self.account}: e-bill opt-in needs an e-mail address")
        if any(len(line) > 200 for line in self.address) or len(self.address) > 8:
            raise ConfigError(f"account {self.account}: the address must be at most 8 lines of 200 characters")

    @property
    def can_receive_ebill(self) -> bool:
        """Opted in, with an address that has not bounced."""
        return self.ebill and self.email is not None and self.email_status == "ok"


_SELECT = (
    "SELECT account, name, email, address, ebill, email_status, bounced_at, bounce_reason FROM amiflow.account_contacts"
)


def _contact(row: tuple[Any, ...]) -> AccountContact:
    return AccountContact(row[0], row[1], row[2], tuple(row[3] or ()), bool(row[4]), row[5], row[6], row[7])


def get_contact(conn: psycopg.Connection[Any], account: str) -> AccountContact | None:
    """The contact of ``account``, or None."""
    row = conn.execute(f"{_SELECT} WHERE account = %s", (account,)).fetchone()
    return _contact(row) if row else None


def list_contacts(conn: psycopg.Connection[Any], accounts: list[str] | None = None) -> list[AccountContact]:
    """Every contact (or those of ``accounts``), by account."""
    if accounts is None:
        rows = conn.execute(f"{_SELECT} ORDER BY account").fetchall()
    else:
        rows = conn.execute(f"{_SELECT} WHERE account = ANY(%s) ORDER BY account", (accounts,)).fetchall()
    return [_contact(r) for r in rows]


def _address(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in re.split(r"[;\n]", text) if part.strip())


def _row(row: dict[str, Any], where: str) -> AccountContact:
    flag = (row.get("ebill") or "").strip().lower()
    if flag not in _YES:
        raise ConfigError(f"{where}: ebill {row.get('ebill')!r} is not yes or no")
    contact = AccountContact(
        account=(row.get("account") or "").strip(),
        name=(row.get("name") or "").strip(),
        email=(row.get("email") or "").strip() or None,
        address=_address(row.get("address") or ""),
        ebill=_YES[flag],
    )
    try:
        contact.check()
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return contact


def import_contacts_csv(conn: psycopg.Connection[Any], text: str, *, source: str = "CSV") -> int:
    """Import (insert or update) account contacts from CSV in one transaction; returns the number of rows."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows: list[tuple[int, dict[str, Any]]] = []
    try:
        header = reader.fieldnames or []
        for row in reader:
            rows.append((reader.line_num, row))  # the physical line: a quoted address may span lines
    except csv.Error as exc:  # a NUL byte, a stray quote or carriage return the csv module refuses
        raise ConfigError(f"{source} line {reader.line_num + 1}: not readable as CSV ({exc})") from None
    missing = [c for c in REQUIRED_CONTACT_CSV if c not in header]
    if missing:
        raise ConfigError(f"{source}: the header lacks {', '.join(missing)} (needs {','.join(REQUIRED_CONTACT_CSV)})")
    contacts: list[AccountContact] = []
    seen: set[str] = set()
    for line, row in rows:
        contact = _row(row, f"{source} line {line}")
        if contact.account in seen:
            raise ConfigError(f"{source} line {line}: account {contact.account} appears twice")
        seen.add(contact.account)
        contacts.append(contact)
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO amiflow.accounts (account) VALUES (%s) ON CONFLICT (account) DO NOTHING",
            [(c.account,) for c in contacts],
        )
        cur.executemany(
            "INSERT INTO amiflow.account_contacts (account, name, email, address, ebill) VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT (account) DO UPDATE SET name = excluded.name, email = excluded.email,"
            " address = excluded.address, ebill = excluded.ebill, updated_at = now(),"
            " email_status = CASE WHEN account_contacts.email IS DISTINCT FROM excluded.email THEN 'ok'"
            " ELSE account_contacts.email_status END,"
            " bounced_at = CASE WHEN account_contacts.email IS DISTINCT FROM excluded.email THEN NULL"
            " ELSE account_contacts.bounced_at END,"
            " bounce_reason = CASE WHEN account_contacts.email IS DISTINCT FROM excluded.email THEN NULL"
            " ELSE account_contacts.bounce_reason END",
            [(c.account, c.name, c.email, list(c.address), c.ebill) for c in contacts],
        )
    return len(contacts)
