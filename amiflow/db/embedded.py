"""The embedded default database: a PostgreSQL server from the ``pgserver`` wheel under AMIFLOW_DATA_DIR.

Used when AMIFLOW_DATABASE_URL is unset, so one command runs the whole chain on a fresh machine. The server is
shared by every amiflow process using the same data directory and stops when the last one exits.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from amiflow.errors import StorageError

__all__ = ["embedded_url"]

log = logging.getLogger(__name__)
_servers: dict[Path, Any] = {}


def embedded_url(data_dir: Path, *, database: str = "amiflow") -> str:
    """Start (or join) the embedded server under ``data_dir/pg`` and return a URL of ``database`` on it."""
    pgdata = (data_dir / "pg").resolve()
    server = _servers.get(pgdata)
    if server is None:
        try:
            with warnings.catch_warnings():  # pgserver asks for a runtime dir at import; where XDG_RUNTIME_DIR is unset
                warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")  # (services, containers) it falls back
                import pgserver  # to /tmp/runtime-UID itself: no news for the user
        except ImportError as exc:  # pragma: no cover - pgserver is a dependency
            raise StorageError("the embedded database needs the pgserver package (pip install pgserver)") from exc
        pgdata.mkdir(parents=True, exist_ok=True)
        try:
            server = pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
        except Exception as exc:  # pgserver raises plain exceptions from pg_ctl/initdb
            raise StorageError(f"cannot start the embedded PostgreSQL under {pgdata}: {exc}") from exc
        _servers[pgdata] = server
        log.info("embedded PostgreSQL running under %s", pgdata)
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{database}";')
    return str(server.get_uri(database))
