"""The meter registry: add, update, list and show meters, and import them from CSV; the region and the assigned
collector of their accounts (``amiflow.accounts``, migration 0008) come with the same import."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from amiflow.db.meter_keys import MeterKey, parse_key, set_meter_key
from amiflow.errors import ConfigError, StorageError
from amiflow.uri import PROTOCOLS, parse_meter_uri

__all__ = [
    "AccountAssignment",
    "MeterRecord",
    "account_assignments",
    "add_meter",
    "assign_account",
    "get_meter",
    "import_meters_csv",
    "list_meters",
    "update_meter",
]

_NAME_OK = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-")
_STATUSES = ("active", "unverified", "inactive")


@dataclass(frozen=True, slots=True)
class MeterRecord:
    """One registered meter. ``name`` is the meter id used on topics, in URIs and in bills."""

    name: str
    protocol: str
    uri: str | None = None
    timezone: str = "UTC"
    tariff: str | None = None
    account: str | None = None
    serial: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    firmware: str | None = None
    ct_ratio: float = 1.0
    vt_ratio: float = 1.0
    feeder: str | None = None
    status: str = "active"
    commissioning: dict[str, Any] | None = field(default=None, compare=False)
    state: str = "unknown"
    last_seen_at: datetime | None = None

    def check(self) -> None:
        """Raise ConfigError naming the meter and the first wrong field."""
        if not self.name or len(self.name) > 64 or not set(self.name) <= _NAME_OK:
            raise ConfigError(f"meter {self.name!r}: the id must be 1-64 characters of letters, digits, _ . : -")
        if self.protocol not in PROTOCOLS:
            raise ConfigError(
                f"meter {self.name}: unknown protocol {self.protocol!r}; expected one of {', '.join(PROTOCOLS)}"
            )
        if self.uri:
            uri = parse_meter_uri(self.uri)
            if uri.protocol != self.protocol:
                raise ConfigError(f"meter {self.name}: URI {self.uri!r} is {uri.protocol}, not {self.protocol}")
        elif self.protocol != "mqtt":
            raise ConfigError(f"meter {self.name}: a {self.protocol} meter needs a --uri to be polled")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"meter {self.name}: unknown time zone {self.timezone!r} (e.g. Europe/Berlin)") from None
        if self.ct_ratio <= 0 or self.vt_ratio <= 0:
            raise ConfigError(f"meter {self.name}: CT and VT ratios must be positive")
        if self.status not in _STATUSES:
            raise ConfigError(f"meter {self.name}: status must be one of {', '.join(_STATUSES)}")


_COLUMNS = [f.name for f in fields(MeterRecord) if f.name not in ("state", "last_seen_at")]


def _row_to_record(row: dict[str, Any]) -> MeterRecord:
    values: dict[str, Any] = {f.name: row.get(f.name) for f in fields(MeterRecord)}
    values["ct_ratio"] = float(values["ct_ratio"] or 1)
    values["vt_ratio"] = float(values["vt_ratio"] or 1)
    return MeterRecord(**{k: v for k, v in values.items() if v is not None or k in ("uri", "tariff")})


def add_meter(conn: psycopg.Connection[Any], record: MeterRecord) -> int:
    """Register a meter; returns its id. A duplicate id is a ConfigError."""
    record.check()
    values = asdict(record)
    values["commissioning"] = Jsonb(record.commissioning) if record.commissioning is not None else None
    cols = ", ".join(_COLUMNS)
    marks = ", ".join(f"%({c})s" for c in _COLUMNS)
    try:
        row = conn.execute(f"INSERT INTO amiflow.meters ({cols}) VALUES ({marks}) RETURNING id", values).fetchone()
    except psycopg.errors.UniqueViolation:
        raise ConfigError(f"meter {record.name}: already registered (use a different id)") from None
    except psycopg.Error as exc:
        raise StorageError(f"meter {record.name}: {str(exc).strip()}") from exc
    assert row is not None
    return int(row[0])


def update_meter(conn: psycopg.Connection[Any], name: str, **changes: Any) -> None:
    """Change fields of a registered meter (for example commissioning data or status)."""
    if not changes:
        return
    unknown = set(changes) - set(_COLUMNS) - {"state", "last_seen_at"}
    if unknown:
        raise ConfigError(f"meter {name}: no such field(s) {', '.join(sorted(unknown))}")
    current = get_meter(conn, name)
    if current is None:
        raise ConfigError(f"meter {name}: not registered")
    merged = {**asdict(current), **changes}
    MeterRecord(**merged).check()
    values = {k: Jsonb(v) if k == "commissioning" and v is not None else v for k, v in changes.items()}
    sets = ", ".join(f"{k} = %({k})s" for k in values)
    conn.execute(
        f"UPDATE amiflow.meters SET {sets}, updated_at = now() WHERE name = %(_name)s", {**values, "_name": name}
    )


def get_meter(conn: psycopg.Connection[Any], name: str) -> MeterRecord | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT * FROM amiflow.meters WHERE name = %s", (name,)).fetchone()
    return _row_to_record(row) if row else None


def list_meters(
    conn: psycopg.Connection[Any], *, protocol: str | None = None, status: str | None = None
) -> list[MeterRecord]:
    query = "SELECT * FROM amiflow.meters WHERE (%(p)s::text IS NULL OR protocol = %(p)s)"
    query += " AND (%(s)s::text IS NULL OR status = %(s)s) ORDER BY name"
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query, {"p": protocol, "s": status}).fetchall()
    return [_row_to_record(r) for r in rows]


@dataclass(frozen=True, slots=True)
class AccountAssignment:
    """Where an account belongs for collection work: its ``region`` and its assigned ``collector`` (a staff id)."""

    account: str
    region: str | None = None
    collector: str | None = None

    def check(self) -> None:
        """Raise ConfigError naming the account and the first wrong field."""
        for what, value in (("region", self.region), ("collector", self.collector)):
            if value is not None and not 1 <= len(value) <= 64:
                raise ConfigError(f"account {self.account}: the {what} must be 1-64 characters")


def assign_account(conn: psycopg.Connection[Any], a: AccountAssignment) -> None:
    """Set the region and collector of ``a.account`` (creating the account, its currency still unknown, if new)."""
    a.check()
    conn.execute(
        "INSERT INTO amiflow.accounts (account, region, collector) VALUES (%s, %s, %s) ON CONFLICT (account)"
        " DO UPDATE SET region = excluded.region, collector = excluded.collector, updated_at = now()",
        (a.account, a.region, a.collector),
    )


def account_assignments(conn: psycopg.Connection[Any]) -> dict[str, AccountAssignment]:
    """The region and collector of every account that has either."""
    rows = conn.execute(
        "SELECT account, region, collector FROM amiflow.accounts WHERE region IS NOT NULL OR collector IS NOT NULL"
    ).fetchall()
    return {a: AccountAssignment(a, r, c) for a, r, c in rows}


REQUIRED_CSV = ("meter", "protocol", "uri", "timezone", "tariff", "account")
_OPTIONAL_CSV = ("serial", "manufacturer", "model", "feeder", "ct_ratio", "vt_ratio", "status")
_ACCOUNT_CSV = ("region", "collector")


def import_meters_csv(conn: psycopg.Connection[Any], text: str, *, source: str = "CSV") -> int:
    """Import meters from CSV (header with at least meter,protocol,uri,timezone,tariff,account) in one transaction.

    Optional columns ``region`` and ``collector`` assign the row's account (rows of one account must agree); an
    optional ``key`` column holds an M-Bus / wM-Bus meter's AES-128 key (32 hex digits, stored in
    ``amiflow.meter_keys``, never echoed in an error). Every row is checked first; the first bad row is a
    ConfigError naming the line, and nothing is imported.
    """
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header, rows = reader.fieldnames or [], list(reader)
    except csv.Error as exc:  # a NUL byte, a stray quote or carriage return the csv module refuses
        raise ConfigError(f"{source} line {reader.line_num + 1}: not readable as CSV ({exc})") from None
    missing = [c for c in REQUIRED_CSV if c not in header]
    if missing:
        raise ConfigError(f"{source}: the header lacks {', '.join(missing)} (needs {','.join(REQUIRED_CSV)})")
    records = []
    keys: dict[str, MeterKey] = {}
    seen: set[str] = set()
    assignments: dict[str, AccountAssignment] = {}
    for line, row in enumerate(rows, start=2):
        extra: dict[str, Any] = {k: row[k] for k in _OPTIONAL_CSV if row.get(k)}
        for ratio in ("ct_ratio", "vt_ratio"):
            if ratio in extra:
                try:
                    extra[ratio] = float(extra[ratio])
                except ValueError:
                    raise ConfigError(f"{source} line {line}: {ratio} {extra[ratio]!r} is not a number") from None
        record = MeterRecord(
            name=(row["meter"] or "").strip(),
            protocol=(row["protocol"] or "").strip(),
            uri=(row["uri"] or "").strip() or None,
            timezone=(row["timezone"] or "").strip() or "UTC",
            tariff=(row["tariff"] or "").strip() or None,
            account=(row["account"] or "").strip() or None,
            **extra,
        )
        try:
            record.check()
        except ConfigError as exc:
            raise ConfigError(f"{source} line {line}: {exc}") from None
        if record.name in seen:
            raise ConfigError(f"{source} line {line}: meter {record.name} appears twice")
        seen.add(record.name)
        records.append(record)
        if (row.get("key") or "").strip():
            keys[record.name] = parse_key(row["key"], where=f"{source} line {line}: meter {record.name}")
        _collect_assignment(assignments, record.account, row, f"{source} line {line}")
    with conn.transaction():
        for i, record in enumerate(records):
            try:
                add_meter(conn, record)
            except ConfigError as exc:
                raise ConfigError(f"{source} line {i + 2}: {exc}") from None
            if record.name in keys:
                set_meter_key(conn, record.name, keys[record.name])
        for assignment in assignments.values():
            assign_account(conn, assignment)
    return len(records)


def _collect_assignment(
    found: dict[str, AccountAssignment], account: str | None, row: dict[str, Any], where: str
) -> None:
    """The row's region/collector for its account; ConfigError when it contradicts an earlier row of that account."""
    values = {k: (row.get(k) or "").strip() or None for k in _ACCOUNT_CSV}
    if account is None or not any(values.values()):
        return
    a = AccountAssignment(account, values["region"], values["collector"])
    try:
        a.check()
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if found.setdefault(account, a) != a:
        raise ConfigError(f"{where}: account {account} has another region or collector on an earlier line")
