"""Shared test fixtures: a real PostgreSQL (a fresh, migrated database per test) and a real MQTT broker.

The servers come from AMIFLOW_TEST_DATABASE_URL (a role that may create databases) and AMIFLOW_TEST_MQTT_URL; when
unset, the suite falls back to an embedded PostgreSQL (pgserver) and an in-process broker.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from amiflow.db.migrate import migrate


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at database ``name``."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A URL of the test server's maintenance database (a role that may create databases)."""
    url = os.environ.get("AMIFLOW_TEST_DATABASE_URL")
    if url:
        yield url
        return
    import pgserver

    with tempfile.TemporaryDirectory(prefix="amiflow-pg-") as tmp:
        server = pgserver.get_server(Path(tmp), cleanup_mode="stop")
        yield str(server.get_uri("postgres"))


def _admin(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True)


@pytest.fixture(scope="session")
def template_db(pg_server_url: str) -> Iterator[str]:
    """A migrated template database, created once per test session and dropped at its end."""
    name = f"amiflow_tpl_{uuid.uuid4().hex[:12]}"
    with _admin(pg_server_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        migrate(with_database(pg_server_url, name))
        with _admin(pg_server_url) as conn:
            # TimescaleDB's background workers connect to every database with the extension; a template must have
            # no sessions for CREATE DATABASE ... TEMPLATE to copy it
            conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        yield name
    finally:
        with _admin(pg_server_url) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_url(pg_server_url: str, template_db: str) -> Iterator[str]:
    """A fresh, migrated database for one test (a copy of the template), dropped afterwards."""
    name = f"amiflow_t_{uuid.uuid4().hex[:12]}"
    with _admin(pg_server_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    try:
        yield with_database(pg_server_url, name)
    finally:
        with _admin(pg_server_url) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_conn(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to the test's fresh database."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def mqtt_url() -> Iterator[str]:
    """The test broker: AMIFLOW_TEST_MQTT_URL, or an in-process broker for this session."""
    url = os.environ.get("AMIFLOW_TEST_MQTT_URL")
    if url:
        yield url
        return
    from amiflow_app.broker import EmbeddedBroker

    broker = EmbeddedBroker()
    broker.start()
    try:
        yield broker.url
    finally:
        broker.stop()


@pytest.fixture
def topic_prefix() -> str:
    """A topic prefix of this test's own, in place of ``ami/v1``."""
    return f"amitest/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def timescaledb(db_conn: psycopg.Connection[Any]) -> None:
    """Skip unless the test database stores readings in a TimescaleDB hypertable."""
    row = db_conn.execute("SELECT value FROM amiflow.storage_config WHERE key = 'backend'").fetchone()
    if not row or row[0] != "timescaledb":
        pytest.skip("TimescaleDB is not installed on this PostgreSQL server (plain partitioned storage in use)")
