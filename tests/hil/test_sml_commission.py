"""``amiflow commission`` identifies an SML push meter by listening to it: the nameplate id and the suggested
registry name from the server id, the manufacturer's FLAG id, start register reads in base units; a link that
carries nothing is a one-line failure, not a hang."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from simulators.sml_meter import SmlSimulator


def _commission(uri: str, db_url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AMIFLOW_DATA_DIR": str(tmp_path), "AMIFLOW_DATABASE_URL": db_url}
    cmd = [sys.executable, "-m", "amiflow_app", "commission", uri, "--format", "json"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=90)


def test_commission_listens_to_an_sml_meter(db_url: str, tmp_path: Path) -> None:
    async def main() -> subprocess.CompletedProcess[str]:
        async with SmlSimulator(profile="ehz", seed=3, interval_s=(0.3, 0.6)) as sim:
            return await asyncio.to_thread(_commission, f"{sim.uri}?listen=8", db_url, tmp_path)

    done = asyncio.run(main())
    assert done.stdout.strip(), done.stderr
    report = json.loads(done.stdout)
    ident = report["identity"]
    assert ident["serial"].startswith("1 EMH") and ident["registry_name"] == ident["serial"].replace(" ", "")
    assert ident["manufacturer"] == "EMH" and "1-0:1.8.0" in ident["obis"]
    checks = {c["name"]: c["status"] for c in report["checks"]}
    assert checks["connect"] == "pass" and checks["identify"] == "pass" and checks["read"] == "pass", checks
    assert report["verdict"].startswith("PASS"), (report["verdict"], report["checks"])


def test_a_silent_link_fails_in_one_line(db_url: str, tmp_path: Path) -> None:
    with socket.socket() as server:  # accepts, then says nothing: an IR head on the wrong window
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        done = _commission(f"sml+tcp://127.0.0.1:{port}?listen=1", db_url, tmp_path)
    assert "Traceback" not in done.stderr
    report = json.loads(done.stdout)
    failed = [c for c in report["checks"] if c["status"] == "fail"]
    assert failed and "no SML bytes" in failed[0]["detail"], report["checks"]
