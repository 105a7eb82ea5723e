"""``amiflow meters move-in|move-out`` record service periods the billing run prorates by (rating.service_store)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg


def _run(db_url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AMIFLOW_DATABASE_URL": db_url, "AMIFLOW_DATA_DIR": str(tmp_path)}
    cmd = [sys.executable, "-m", "amiflow_app", "meters", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


def test_move_in_and_out(db_url: str, db_conn: psycopg.Connection[Any], tmp_path: Path) -> None:
    db_conn.execute("INSERT INTO amiflow.meters (name, protocol) VALUES ('MV1', 'mqtt')")
    done = _run(db_url, tmp_path, "move-in", "MV1", "--account", "ACC-7", "--on", "2026-11-10")
    assert done.returncode == 0, done.stderr
    assert "ACC-7 takes service through MV1 from 2026-11-10" in done.stdout
    done = _run(db_url, tmp_path, "move-out", "MV1", "--on", "2026-11-25")
    assert done.returncode == 0, done.stderr
    rows = db_conn.execute("SELECT account, start_date::text, end_date::text FROM amiflow.service_periods").fetchall()
    assert rows == [("ACC-7", "2026-11-10", "2026-11-25")]
    again = _run(db_url, tmp_path, "move-out", "MV1", "--on", "2026-11-26")
    assert again.returncode != 0 and "no open service period" in again.stderr and "Traceback" not in again.stderr
    bad = _run(db_url, tmp_path, "move-in", "NOPE", "--account", "A", "--on", "2026-11-01")
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
