"""Per-meter AES-128 keys of M-Bus and wireless M-Bus meters (``amiflow.meter_keys``, migration 0016).

A key is a secret: it is read only by the roles that decrypt telegrams (the ingest role: the poller and the wM-Bus
receiver), it is never part of a :class:`~amiflow.db.registry.MeterRecord` (so ``meters show/list`` cannot print
it), and no message raised or logged here holds it: errors name the meter and the file, and say how many
characters or bytes were found, never which. :class:`MeterKey` wraps the 16 bytes with a ``repr`` that hides them.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from amiflow.errors import ConfigError, StorageError

__all__ = [
    "KEY_BYTES",
    "MeterKey",
    "delete_meter_key",
    "has_meter_key",
    "load_meter_keys",
    "parse_key",
    "read_key_file",
    "set_meter_key",
]

KEY_BYTES = 16
_HEX = set(string.hexdigits)
_SEPARATORS = str.maketrans("", "", " \t\r\n:-")


@dataclass(frozen=True, slots=True)
class MeterKey:
    """One meter's key; ``repr`` and ``str`` never show the bytes."""

    raw: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.raw) != KEY_BYTES:
            raise ConfigError(f"an AES-128 key is {KEY_BYTES} bytes, not {len(self.raw)}")

    def __str__(self) -> str:
        return "MeterKey(hidden)"


def parse_key(text: str, *, where: str) -> MeterKey:
    """A key written as 32 hex digits (spaces, colons and dashes between them allowed); ``where`` names the input
    in the error (a file, a CSV line), which never quotes the text."""
    digits = text.strip().translate(_SEPARATORS)
    if digits[:2].lower() == "0x":
        digits = digits[2:]
    if len(digits) != 2 * KEY_BYTES or not set(digits) <= _HEX:
        bad = "" if set(digits) <= _HEX else " (not all hex digits)"
        raise ConfigError(f"{where}: an AES-128 key is {2 * KEY_BYTES} hex digits; found {len(digits)} characters{bad}")
    return MeterKey(bytes.fromhex(digits))


def read_key_file(path: Path) -> MeterKey:
    """A key file: 32 hex digits (one line), or the 16 raw bytes of the key."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"key file {path}: cannot read ({exc.strerror})") from None
    if len(data) == KEY_BYTES and not set(data.decode("latin-1")) <= _HEX:
        return MeterKey(data)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise ConfigError(
            f"key file {path}: expected 32 hex digits or the 16 raw bytes of the key; found {len(data)} bytes"
        ) from None
    return parse_key(text, where=f"key file {path}")


def _meter_id(conn: psycopg.Connection[Any], meter: str) -> int:
    row = conn.execute("SELECT id FROM amiflow.meters WHERE name = %s", (meter,)).fetchone()
    if row is None:
        raise ConfigError(f"meter {meter}: not registered (see `amiflow meters list`)")
    return int(row[0])


def set_meter_key(conn: psycopg.Connection[Any], meter: str, key: MeterKey) -> None:
    """Store (or replace) the meter's key."""
    meter_id = _meter_id(conn, meter)
    try:
        conn.execute(
            "INSERT INTO amiflow.meter_keys (meter_id, aes_key) VALUES (%s, %s) ON CONFLICT (meter_id)"
            " DO UPDATE SET aes_key = excluded.aes_key, updated_at = now()",
            (meter_id, key.raw),
        )
    except psycopg.Error as exc:  # the server's DETAIL may quote the row: only the SQLSTATE leaves this function
        raise StorageError(f"meter {meter}: the key was not stored (SQLSTATE {exc.sqlstate})") from None


def delete_meter_key(conn: psycopg.Connection[Any], meter: str) -> bool:
    """Remove the meter's key; False when it had none."""
    cur = conn.execute("DELETE FROM amiflow.meter_keys WHERE meter_id = %s", (_meter_id(conn, meter),))
    return cur.rowcount > 0


def has_meter_key(conn: psycopg.Connection[Any], meter: str) -> bool:
    """True when a key is stored for the meter (the key itself is not read)."""
    row = conn.execute(
        "SELECT 1 FROM amiflow.meter_keys k JOIN amiflow.meters m ON m.id = k.meter_id WHERE m.name = %s", (meter,)
    ).fetchone()
    return row is not None


def load_meter_keys(conn: psycopg.Connection[Any], meters: Iterable[str] | None = None) -> dict[str, MeterKey]:
    """meter name -> key, of ``meters`` (default: every meter that has one)."""
    names = None if meters is None else sorted(set(meters))
    rows = conn.execute(
        "SELECT m.name, k.aes_key FROM amiflow.meter_keys k JOIN amiflow.meters m ON m.id = k.meter_id"
        " WHERE %(n)s::text[] IS NULL OR m.name = ANY(%(n)s)",
        {"n": names},
    ).fetchall()
    return {str(name): MeterKey(bytes(raw)) for name, raw in rows}
