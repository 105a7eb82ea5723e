"""The simulator commands take ``--wiring``, so a field engineer (or a HIL rig) can try the commissioning sheet on a
wrongly installed meter from the shell: a reversed CT on L2 of a simulated SDM630 fails the sheet, naming L2."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(90)


def _amiflow(*args: str) -> list[str]:
    return [sys.executable, "-m", "amiflow_app", *args]


@pytest.mark.parametrize(
    ("wiring", "check", "named"), [("reversed_ct=2", "direction", "L2"), ("voltage=190", "voltage", "190")]
)
def test_a_miswired_simulator_fails_its_sheet(tmp_path: Path, wiring: str, check: str, named: str) -> None:
    env = {**os.environ, "AMIFLOW_DATA_DIR": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1"}
    sim = subprocess.Popen(
        _amiflow("sim", "modbus", "--listen", "tcp://127.0.0.1:0", "--wiring", wiring),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert sim.stdout is not None
        line = sim.stdout.readline()
        found = re.search(r"(modbus\+tcp://\S+)", line)
        assert found, line
        done = subprocess.run(
            _amiflow("commission", found.group(1), "--format", "json"),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        sim.terminate()
        sim.wait(10)
    report = json.loads(done.stdout)
    failed = {c["name"]: c["detail"] for c in report["checks"] if c["status"] == "fail"}
    assert check in failed and named in failed[check], report["checks"]
    assert report["verdict"].startswith("FAIL")
