"""Versioned schema migrations.

Migrations are the SQL files ``migrations/NNNN_name.sql``, applied in file-name order, each in its own transaction
and recorded in ``amiflow.schema_migrations``. A session-level advisory lock serializes concurrent migrators: the
second waits, then finds nothing left to do. A file may hold ``-- @if timescaledb`` / ``-- @else`` / ``-- @end``
blocks, chosen once per database by whether TimescaleDB is available, and ``@@name@@`` placeholders filled from the
settings.
"""

from __future__ import annotations

import itertools
import logging
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg

from amiflow.errors import ConfigError, StorageError

__all__ = ["Migration", "MigrationStatus", "migrate", "migrations", "status"]

log = logging.getLogger(__name__)

_LOCK_KEY = 0x616D69666C6F77  # "amiflow"
_NAME_RE = re.compile(r"^(\d{4}[a-z]?)_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: str
    name: str
    sql: str


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    applied: tuple[str, ...]
    pending: tuple[str, ...]
    backend: str  # "timescaledb" or "partitioned"
    timescaledb_version: str | None
    features: dict[str, Any]


def migrations() -> list[Migration]:
    """All migration files shipped with amiflow, in order."""
    found = []
    for entry in resources.files("amiflow.db.migrations").iterdir():
        m = _NAME_RE.match(entry.name)
        if m:
            found.append(Migration(m[1], m[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda mig: mig.version)
    for a, b in itertools.pairwise(found):
        if a.version == b.version:
            raise ConfigError(
                f"two migrations share version {a.version} ({a.version}_{a.name}.sql, {b.version}_{b.name}.sql):"
                " renumber one of them"
            )
    return found


def render(sql: str, *, timescaledb: bool, params: dict[str, str]) -> str:
    """Keep the branch of each ``@if timescaledb`` block that applies and fill the ``@@name@@`` placeholders."""
    out: list[str] = []
    keep = [True]
    for line in sql.splitlines():
        tag = line.strip()
        if tag == "-- @if timescaledb":
            keep.append(keep[-1] and timescaledb)
        elif tag == "-- @else":
            parent = keep[-2] if len(keep) > 1 else True
            keep[-1] = parent and not keep[-1]
        elif tag == "-- @end":
            keep.pop()
        elif keep[-1]:
            out.append(line)
    text = "\n".join(out)

    def fill(m: re.Match[str]) -> str:
        if m[1] not in params:
            raise ConfigError(f"migration placeholder @@{m[1]}@@ has no value")
        return params[m[1]]

    return re.sub(r"@@([a-z_]+)@@", fill, text)


def _timescaledb_available(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    if row is None:
        return False
    preload = conn.execute("SELECT current_setting('shared_preload_libraries')").fetchone()
    return preload is not None and "timescaledb" in str(preload[0])


def _backend(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute(
        "SELECT value FROM amiflow.storage_config WHERE key = 'backend'"
        if _has_table(conn, "storage_config")
        else "SELECT NULL WHERE false"
    ).fetchone()
    if row:
        return str(row[0])
    if _timescaledb_available(conn):
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        return "timescaledb"
    return "partitioned"


def _has_table(conn: psycopg.Connection[Any], name: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"amiflow.{name}",)).fetchone() == (True,)


def _params(chunk_interval: str, compress_after: str) -> dict[str, str]:
    for name, value in (
        ("AMIFLOW_CHUNK_INTERVAL", chunk_interval),
        ("AMIFLOW_COMPRESS_AFTER", compress_after),
    ):
        if not re.fullmatch(r"[0-9]+ ?(hours?|days?|weeks?|months?)", value.strip()):
            raise ConfigError(f"{name}: expected an interval like '7 days' or '12 hours' (got {value!r})")
    return {"chunk_interval": chunk_interval.strip(), "compress_after": compress_after.strip()}


#: A database that does not answer (a cut network, not a refused port) is an error after this long, not a hang.
CONNECT_TIMEOUT_S = 10


def migrate(
    url: str,
    *,
    chunk_interval: str = "7 days",
    compress_after: str = "7 days",
    partitions_ahead: int = 2,
) -> list[str]:
    """Apply every pending migration to the database at ``url``; returns the versions applied (empty if none)."""
    params = _params(chunk_interval, compress_after)
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg.OperationalError as exc:
        raise StorageError(f"cannot connect to the database to migrate: {exc}".strip()) from exc
    applied: list[str] = []
    try:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute("CREATE SCHEMA IF NOT EXISTS amiflow")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS amiflow.schema_migrations ("
                " version text PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r[0] for r in conn.execute("SELECT version FROM amiflow.schema_migrations")}
            backend = _backend(conn)
            for mig in migrations():
                if mig.version in done:
                    continue
                sql = render(mig.sql, timescaledb=backend == "timescaledb", params=params)
                log.info("applying migration %s_%s (%s)", mig.version, mig.name, backend)
                with conn.transaction():
                    conn.execute(sql.encode())
                    conn.execute(
                        "INSERT INTO amiflow.schema_migrations (version, name) VALUES (%s, %s)",
                        (mig.version, mig.name),
                    )
                applied.append(mig.version)
            conn.execute(
                "INSERT INTO amiflow.storage_config VALUES ('backend', %s) ON CONFLICT (key) DO NOTHING",
                (backend,),
            )
            if backend == "partitioned":
                conn.execute(
                    "SELECT amiflow.ensure_partitions(now() - w, now() + w * %s)"
                    " FROM (SELECT value::interval AS w FROM amiflow.storage_config"
                    " WHERE key = 'chunk_interval') s",
                    (partitions_ahead,),
                )
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    except psycopg.Error as exc:
        raise StorageError(f"migration failed: {exc}".strip()) from exc
    finally:
        conn.close()
    return applied


def status(url: str) -> MigrationStatus:
    """The applied and pending migrations and the storage features in use."""
    try:
        conn = psycopg.connect(url, autocommit=True)
    except psycopg.OperationalError as exc:
        raise StorageError(f"cannot connect to the database: {exc}".strip()) from exc
    with conn:
        applied: tuple[str, ...] = ()
        if _has_table(conn, "schema_migrations"):
            applied = tuple(r[0] for r in conn.execute("SELECT version FROM amiflow.schema_migrations ORDER BY 1"))
        pending = tuple(m.version for m in migrations() if m.version not in applied)
        backend = "none"
        features: dict[str, Any] = {}
        if _has_table(conn, "storage_config"):
            cfg: dict[str, str] = dict(conn.execute("SELECT key, value FROM amiflow.storage_config").fetchall())
            backend = cfg.get("backend", "partitioned")
            features["chunk_interval"] = cfg.get("chunk_interval")
        row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        ts_version = str(row[0]) if row else None
        if backend == "timescaledb" and ts_version:
            features["hypertable"] = True
            comp = conn.execute(
                "SELECT count(*) FILTER (WHERE is_compressed), count(*) FROM timescaledb_information.chunks"
                " WHERE hypertable_schema = 'amiflow' AND hypertable_name = 'readings'"
            ).fetchone()
            features["chunks"] = comp[1] if comp else 0
            features["compressed_chunks"] = comp[0] if comp else 0
            features["continuous_aggregate"] = "amiflow.energy_hourly"
        elif backend == "partitioned" and _has_table(conn, "readings"):
            row = conn.execute(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = 'amiflow.readings'::regclass"
            ).fetchone()
            features["partitions"] = row[0] if row else 0
            features["rollup"] = "amiflow.energy_hourly (materialized view)"
        return MigrationStatus(applied, pending, backend, ts_version, features)
