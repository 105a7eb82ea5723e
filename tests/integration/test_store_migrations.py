"""Migrations on a real server: idempotent, safe when two processes race, and the embedded default."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from amiflow.db import open_database
from amiflow.db.migrate import migrate, migrations, render, status
from amiflow.errors import ConfigError
from amiflow.settings import Settings
from tests.conftest import with_database


@pytest.fixture
def empty_db(pg_server_url: str) -> Any:
    name = f"amiflow_m_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield with_database(pg_server_url, name)
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_migrate_twice_is_idempotent(empty_db: str) -> None:
    first = migrate(empty_db)
    assert first == [m.version for m in migrations()]
    assert migrate(empty_db) == []
    st = status(empty_db)
    assert st.pending == ()
    assert st.applied == tuple(first)
    assert st.backend in ("timescaledb", "partitioned")


def test_two_processes_migrate_at_once(empty_db: str) -> None:
    code = "import json, sys; from amiflow.db.migrate import migrate; print(json.dumps(migrate(sys.argv[1])))"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, empty_db], stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    results = sorted((json.loads(out) for out in outputs), key=len)
    assert results[0] == []  # the second waited on the advisory lock, then found nothing to do
    assert results[1] == [m.version for m in migrations()]
    with psycopg.connect(empty_db) as conn:
        rows = conn.execute("SELECT version, count(*) FROM amiflow.schema_migrations GROUP BY 1").fetchall()
    assert all(count == 1 for _, count in rows)


def test_render_keeps_the_right_branch_and_fills_placeholders() -> None:
    sql = "a\n-- @if timescaledb\nts @@x@@\n-- @else\npg @@x@@\n-- @end\nz"
    assert render(sql, timescaledb=True, params={"x": "1"}) == "a\nts 1\nz"
    assert render(sql, timescaledb=False, params={"x": "1"}) == "a\npg 1\nz"
    with pytest.raises(ConfigError, match="@@x@@"):
        render(sql, timescaledb=False, params={})


def test_bad_chunk_interval_is_a_one_line_config_error(empty_db: str) -> None:
    with pytest.raises(ConfigError, match="AMIFLOW_CHUNK_INTERVAL"):
        migrate(empty_db, chunk_interval="1; DROP TABLE x")


def test_partitions_are_created_ahead_and_on_demand(db_conn: psycopg.Connection[Any]) -> None:
    backend = db_conn.execute("SELECT value FROM amiflow.storage_config WHERE key = 'backend'").fetchone()
    if backend != ("partitioned",):
        pytest.skip("native partitioning is used only without TimescaleDB")
    ahead = db_conn.execute(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'amiflow.readings'::regclass"
    ).fetchone()
    assert ahead is not None and ahead[0] >= 3  # default + the current + partitions ahead
    # a row that fell into the default partition moves when its partition is created
    db_conn.execute("INSERT INTO amiflow.meters (name, protocol) VALUES ('P1', 'mqtt')")
    db_conn.execute(
        "INSERT INTO amiflow.readings (meter_id, channel_id, ts, value, source)"
        " SELECT id, 1, '2019-03-01T00:15:00Z', 1.5, 1 FROM amiflow.meters WHERE name = 'P1'"
    )
    assert db_conn.execute("SELECT count(*) FROM amiflow.readings_default").fetchone() == (1,)
    created = db_conn.execute("SELECT amiflow.ensure_partitions('2019-03-01', '2019-03-01')").fetchone()
    assert created == (1,)
    assert db_conn.execute("SELECT count(*) FROM amiflow.readings_default").fetchone() == (0,)
    assert db_conn.execute("SELECT value FROM amiflow.readings").fetchone() == (1.5,)


def test_embedded_default_migrates_twice(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=None)
    with open_database(settings) as db, db.connect() as conn:
        assert conn.execute("SELECT count(*) FROM amiflow.schema_migrations").fetchone() == (len(migrations()),)
    with open_database(settings) as db:
        assert status(db.url).pending == ()
        assert "host=" in db.url or db.url.startswith("postgresql://")


def test_embedded_default_prints_no_library_warning(tmp_path: Path) -> None:
    """A service or container without XDG_RUNTIME_DIR: pgserver's import warns about it; the user sees only amiflow."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("AMIFLOW_") and k != "XDG_RUNTIME_DIR"}
    done = subprocess.run(
        [sys.executable, "-m", "amiflow_app", "--data-dir", str(tmp_path / "data"), "meters", "list"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr and "XDG_RUNTIME_DIR" not in done.stderr, done.stderr
    assert "0 meter(s)" in done.stdout
