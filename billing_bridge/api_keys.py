"""API keys of the HTTP API: the roles, the principal a request authenticates as, and the keys stored hashed.

Roles (docs/security.md has the route table):

- ``operator``: every route (``AMIFLOW_API_TOKEN`` is the operator key that needs no table row);
- ``billing``: the billing system: payments, balances and installment plans (writes) and the read routes; a request
  signed with ``AMIFLOW_BILLING_SECRET`` is this role too;
- ``metrics``: read-only: ``/metrics`` (when ``AMIFLOW_API_METRICS_AUTH``) and the read routes; never a write, never
  a customer's usage export;
- ``customer``: one account: its usage routes, its account, its bills and plans (``amiflow usage token`` prints a
  stateless one; a stored key of this role names its account).

A key is ``amk_`` and 43 URL-safe characters (256 random bits). Only its SHA-256 is stored: a key is not a password
a person chose, so a slow hash would protect nothing and would cost every request; the digest is looked up by index.
The plain key is shown once, when it is created.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from amiflow.errors import ConfigError

__all__ = [
    "KEY_PREFIX",
    "ApiKey",
    "Principal",
    "Role",
    "create_key",
    "find_key",
    "has_active_key",
    "key_digest",
    "list_keys",
    "new_key",
    "revoke_key",
]

KEY_PREFIX = "amk_"


class Role(enum.StrEnum):
    """What a caller of the HTTP API may do."""

    OPERATOR = "operator"
    BILLING = "billing"
    METRICS = "metrics"
    CUSTOMER = "customer"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request authenticated as: a role, a name for the log, and the account of a customer."""

    role: Role
    name: str
    account: str | None = None


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key as ``amiflow api-keys list`` shows it (never the key itself)."""

    id: int
    name: str
    role: Role
    account: str | None
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


def new_key() -> str:
    """A fresh random key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_digest(key: str) -> bytes:
    """The stored form of ``key``."""
    return hashlib.sha256(key.encode()).digest()


def _role(text: str) -> Role:
    try:
        return Role(text)
    except ValueError:
        raise ConfigError(f"unknown role {text!r}: expected one of {', '.join(r.value for r in Role)}") from None


def create_key(
    conn: psycopg.Connection[Any],
    name: str,
    role: str,
    *,
    account: str | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Store a new key of ``role`` under ``name``; returns the record and the plain key (shown once)."""
    kind = _role(role)
    if not name.strip():
        raise ConfigError("an API key needs a name (--name)")
    if (kind is Role.CUSTOMER) != bool(account):
        raise ConfigError("a customer key needs --account, and only a customer key takes one")
    if expires_at is not None and expires_at.tzinfo is None:
        raise ConfigError("--expires needs a UTC offset, e.g. 2027-01-01T00:00:00Z")
    key = new_key()
    try:
        row = conn.execute(
            "INSERT INTO amiflow.api_keys (name, role, account, key_sha256, prefix, expires_at)"
            " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id, created_at",
            (name.strip(), kind.value, account, key_digest(key), key[:10], expires_at),
        ).fetchone()
    except psycopg.errors.UniqueViolation:
        raise ConfigError(f"an API key named {name!r} exists already (revoke it or choose another name)") from None
    assert row is not None
    return ApiKey(row[0], name.strip(), kind, account, key[:10], row[1], expires_at, None), key


def list_keys(conn: psycopg.Connection[Any]) -> list[ApiKey]:
    """Every stored key, oldest first."""
    rows = conn.execute(
        "SELECT id, name, role, account, prefix, created_at, expires_at, revoked_at FROM amiflow.api_keys ORDER BY id"
    ).fetchall()
    return [ApiKey(r[0], r[1], Role(r[2]), r[3], r[4], r[5], r[6], r[7]) for r in rows]


def revoke_key(conn: psycopg.Connection[Any], name: str) -> bool:
    """Revoke the key named ``name`` at once; False when there is no such active key."""
    row = conn.execute(
        "UPDATE amiflow.api_keys SET revoked_at = now() WHERE name = %s AND revoked_at IS NULL RETURNING id", (name,)
    ).fetchone()
    return row is not None


def find_key(conn: psycopg.Connection[Any], key: str) -> Principal | None:
    """The principal of an active stored ``key``; None for an unknown, revoked or expired one."""
    if not key.startswith(KEY_PREFIX) or len(key) > 128:
        return None
    row = conn.execute(
        "SELECT name, role, account FROM amiflow.api_keys WHERE key_sha256 = %s AND revoked_at IS NULL"
        " AND (expires_at IS NULL OR expires_at > now())",
        (key_digest(key),),
    ).fetchone()
    return Principal(Role(row[1]), row[0], row[2]) if row is not None else None


def has_active_key(conn: psycopg.Connection[Any]) -> bool:
    """True when at least one stored key is active (the API is not closed then, only locked)."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM amiflow.api_keys WHERE revoked_at IS NULL"
        " AND (expires_at IS NULL OR expires_at > now()))"
    ).fetchone()
    return bool(row and row[0])
