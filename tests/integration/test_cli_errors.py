"""Expected failures reach the user as one line on stderr and a non-zero exit, never a traceback.

``-v`` adds the underlying cause as a line, ``-vv`` the traceback.

Each case runs the real console script in a child process against something that is not there: a database port
nobody listens on, a broker port nobody listens on, a file that does not exist, a setting that is wrong.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends: nobody listens there


def _run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "AMIFLOW_DATA_DIR": str(tmp_path / "data"), **env}
    return subprocess.run(
        [sys.executable, "-m", "amiflow_app", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
        cwd=tmp_path,
    )


def _assert_one_line(proc: subprocess.CompletedProcess[str], command: str, *words: str) -> None:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("amiflow ")]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"amiflow {command}: "), lines[0]
    for word in words:
        assert word in lines[0], lines[0]


DB_COMMANDS = [
    ["db", "status"],
    ["db", "migrate"],
    ["meters", "list"],
    ["report", "--period", "2026-01"],
    ["bill", "run", "--period", "2026-01"],
    ["arrears", "report"],
]


@pytest.mark.parametrize("args", DB_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_unreachable_database_is_one_line(args: list[str], tmp_path: Path) -> None:
    url = f"postgresql://127.0.0.1:{_closed_port()}/amiflow"
    proc = _run(args, tmp_path, AMIFLOW_DATABASE_URL=url)
    command = " ".join(a for a in args[:2] if not a.startswith("-"))
    _assert_one_line(proc, command, "database")


def test_verbose_adds_the_cause_without_a_traceback(tmp_path: Path) -> None:
    url = f"postgresql://127.0.0.1:{_closed_port()}/amiflow"
    proc = _run(["-v", "db", "status"], tmp_path, AMIFLOW_DATABASE_URL=url)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "caused by OperationalError:" in proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1].startswith("amiflow db status: cannot connect to the database")


def test_very_verbose_adds_the_traceback(tmp_path: Path) -> None:
    url = f"postgresql://127.0.0.1:{_closed_port()}/amiflow"
    proc = _run(["-vv", "db", "status"], tmp_path, AMIFLOW_DATABASE_URL=url)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1].startswith("amiflow db status: cannot connect to the database")


def test_unreachable_broker_is_one_line(tmp_path: Path, db_url: str) -> None:
    proc = _run(
        ["ingest", "mqtt"],
        tmp_path,
        AMIFLOW_DATABASE_URL=db_url,
        AMIFLOW_MQTT_URL=f"mqtt://127.0.0.1:{_closed_port()}",
    )
    _assert_one_line(proc, "ingest mqtt", "broker")


@pytest.mark.parametrize(
    ("args", "command"),
    [
        (["rate", "--tariff", "missing.toml", "--usage", "missing.csv"], "rate"),
        (["decode", "p1", "missing.txt"], "decode"),
        (["meters", "import", "missing.csv"], "meters import"),
        (["payments", "import", "missing.csv"], "payments import"),
        (["tariffs", "import", "missing.json"], "tariffs import"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_missing_file_is_one_line(args: list[str], command: str, tmp_path: Path, db_url: str) -> None:
    proc = _run(args, tmp_path, AMIFLOW_DATABASE_URL=db_url)
    _assert_one_line(proc, command, "missing")


def test_wrong_setting_is_one_line(tmp_path: Path) -> None:
    proc = _run(["db", "status"], tmp_path, AMIFLOW_DATABASE_URL="http://127.0.0.1/amiflow")
    assert proc.returncode == 2
    _assert_one_line(proc, "db status", "postgresql")


def test_missing_config_file_is_one_line(tmp_path: Path) -> None:
    proc = _run(["--config", "missing.toml", "db", "status"], tmp_path)
    assert proc.returncode == 2
    _assert_one_line(proc, "db status", "missing.toml")


def test_unreachable_meter_fails_the_sheet_without_traceback(tmp_path: Path, db_url: str) -> None:
    uri = f"modbus+tcp://127.0.0.1:{_closed_port()}?unit=1&map=sdm630"
    proc = _run(["commission", uri], tmp_path, AMIFLOW_DATABASE_URL=db_url)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "FAIL connect" in proc.stdout + proc.stderr
