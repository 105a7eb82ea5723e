"""A scratch database for a benchmark run: created on the configured server (or the embedded one), then dropped."""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from amiflow.db.migrate import migrate


@contextlib.contextmanager
def scratch_database(prefix: str = "amiflow_bench") -> Iterator[str]:
    """Yield the URL of a fresh, migrated database; AMIFLOW_BENCH_DATABASE_URL (or the test URL) picks the server."""
    server = os.environ.get("AMIFLOW_BENCH_DATABASE_URL") or os.environ.get("AMIFLOW_TEST_DATABASE_URL")
    with contextlib.ExitStack() as stack:
        if not server:
            import pgserver

            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="amiflow-bench-pg-"))
            server = str(pgserver.get_server(Path(tmp), cleanup_mode="stop").get_uri("postgres"))
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
        try:
            migrate(url)
            yield url
        finally:
            with psycopg.connect(server, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
