"""The chaos run (``benchmarks/chaos.py --quick``) in CI: private PostgreSQL clusters and a private Mosquitto, the
database killed and a worker killed -9 during the outage, a spool on a full tmpfs, the broker restarted, the network
to the database cut, a Dask worker and the bridge killed -9 mid-run; every invariant of the accounting must hold.
What Mosquitto drops over its restart (it keeps no shared subscription) is counted apart, as ``broker_dropped``, by
a witness on a plain subscription and the broker's log; a reading the broker delivered and amiflow did not store
fails the run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]
ROOT = Path(__file__).resolve().parents[2]
PG_BIN = Path(os.environ.get("AMIFLOW_PG_BIN", "/usr/lib/postgresql/15/bin"))  # as benchmarks/chaos_services.py


def test_the_quick_chaos_run_keeps_every_invariant() -> None:
    missing = [name for name in ("mosquitto", "runuser") if shutil.which(name) is None]
    if not (PG_BIN / "initdb").exists():
        missing.append(str(PG_BIN / "initdb"))
    if missing:
        pytest.skip(f"the chaos run needs {', '.join(missing)}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMIFLOW_")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "chaos.py"), "--quick"],
        capture_output=True, text=True, timeout=400, cwd=ROOT, env=env,
    )  # fmt: skip
    result = re.search(r"^RESULT chaos (.*)$", done.stdout, re.M)
    assert done.returncode == 0 and result, done.stdout[-4000:] + done.stderr[-4000:]
    figures = dict(item.split("=", 1) for item in result[1].split())
    assert figures["failures"] == "0"
    published, stored = int(figures["published"]), int(figures["stored"])
    dropped = int(figures["broker_dropped"])  # Mosquitto's own loss over its restart (benchmarks/chaos_witness.py)
    assert published == stored + int(figures["duplicates"]) + int(figures["quarantined"]) + dropped and stored > 0
    assert int(figures["witness_messages"]) >= int(figures["quarantined_messages"]) > 0
    assert figures["bills"] == figures["meters"] == figures["receiver_keys"] == figures["delivered"]
    assert figures["conflicts"] == figures["receiver_conflicts"] == "0"
