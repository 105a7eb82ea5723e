"""Ctrl-C in the middle of ``amiflow demo`` stops everything it started: the embedded mosquitto child (which runs in
its own session, so the terminal's signal never reaches it), the ingest worker, the simulators, the receiver."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(240)


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_demo_interrupted_mid_ingest_leaves_no_process(db_url: str, tmp_path: Path, sig: signal.Signals) -> None:
    if shutil.which("mosquitto") is None:
        pytest.skip("needs mosquitto on PATH: the embedded broker is then a child process to watch")
    env = {k: v for k, v in os.environ.items() if k != "AMIFLOW_MQTT_URL"}
    env.update(AMIFLOW_DATABASE_URL=db_url, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "amiflow_app", "demo", "--meters", "400", "--out", str(tmp_path / "out")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    children: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("[3/7]"):
                children = _children(proc.pid)
                break
        assert children, "the demo did not reach the ingest step with a broker child"
        time.sleep(1.0)  # mid-ingest
        proc.send_signal(sig)
        try:  # the demo stops in about a second; generous on a shared machine, and a hang shows what it printed
            rest, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"the demo did not stop within 120 s of {sig.name}: {exc.output!r:.3000}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, rest
    assert "interrupted" in rest
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in children if _alive(p)], f"left running: {children}"
