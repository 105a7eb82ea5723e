"""The database layer: migrations, a connection pool, the batch writer and the numpy reader.

``open_database(settings)`` is the one way in: it resolves the URL (the embedded server when none is configured),
applies pending migrations and returns a :class:`Database` with a pool of autocommit connections.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from amiflow.db.embedded import embedded_url
from amiflow.db.migrate import migrate
from amiflow.errors import StorageError
from amiflow.settings import Settings

__all__ = ["Database", "database_url", "open_database"]

log = logging.getLogger(__name__)


def database_url(settings: Settings) -> str:
    """The configured URL, or the embedded server's when AMIFLOW_DATABASE_URL is unset."""
    return settings.database_url or embedded_url(settings.data_dir)


class Database:
    """A database URL with a lazily opened pool of autocommit connections. Constructing it connects nothing."""

    def __init__(self, url: str, *, pool_max_size: int = 8) -> None:
        self.url = url
        self._pool_max_size = pool_max_size
        self._pool: ConnectionPool[Any] | None = None

    @property
    def pool(self) -> ConnectionPool[Any]:
        if self._pool is None:
            self._pool = ConnectionPool(
                self.url,
                min_size=1,
                max_size=self._pool_max_size,
                kwargs={"autocommit": True},
                open=True,
                name="amiflow",
            )
        return self._pool

    def connect(self) -> psycopg.Connection[Any]:
        """A new autocommit connection (the caller closes it)."""
        try:
            return psycopg.connect(self.url, autocommit=True)
        except psycopg.OperationalError as exc:
            raise StorageError(f"cannot connect to the database: {str(exc).strip()}") from exc

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_database(settings: Settings, *, apply_migrations: bool = True) -> Database:
    """Resolve the URL, migrate (unless told not to) and return the Database."""
    url = database_url(settings)
    if apply_migrations:
        migrate(
            url,
            chunk_interval=settings.chunk_interval,
            compress_after=settings.compress_after,
            partitions_ahead=settings.partitions_ahead,
        )
    return Database(url, pool_max_size=settings.pool_max_size)
