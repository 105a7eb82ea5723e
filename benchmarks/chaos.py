"""Chaos run: amiflow against its own private PostgreSQL and Mosquitto while they, the network and its own processes
are killed, and the accounting afterwards (issue 17).

  python benchmarks/chaos.py [--quick] [--only ingest|billing] [--keep]

Starts (under a scratch directory in /tmp, on free ports; never the shared servers on 5432/1883) two PostgreSQL
clusters - one for ingest, whose server is killed, one for billing - and a Mosquitto, then runs two halves at once:

- ingest (:mod:`benchmarks.chaos_ingest`): two ``amiflow ingest mqtt`` workers on a shared subscription, the fleet
  simulator publishing at QoS 1; the database killed (``pg_ctl -m immediate``) mid-stream and started again; worker
  A killed -9 and restarted while it is down; worker B's spool on a 1 MiB tmpfs that fills up; the broker restarted;
  the network to the database cut through a TCP proxy;
- billing (:mod:`benchmarks.chaos_billing`): ``amiflow bill run --dask`` on a real scheduler and two workers, one
  killed -9 mid-run; ``amiflow bridge run`` killed -9 mid-delivery to ``python -m billing_bridge.receiver``.

Then: published = stored + duplicates + quarantined exactly (stored = the distinct valid readings the simulator
sent, each once), every bill exactly once, every delivery's effect exactly once at the receiver. Prints one
``RESULT chaos ...`` line with the counts and exits 1 when an invariant failed (the logs are kept then).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.chaos_billing import BillingChaos
from benchmarks.chaos_ingest import IngestChaos, IngestPlan
from benchmarks.chaos_services import Mosquitto, Postgres


def _in_thread(name: str, fn: Callable[[], dict[str, Any]], out: dict[str, Any], errors: list[str]) -> threading.Thread:
    def target() -> None:
        try:
            out.update(fn())
        except Exception as exc:  # a half that broke down: reported as a failure of the run, not a traceback
            errors.append(f"{name}: {type(exc).__name__}: {exc}")

    thread = threading.Thread(target=target, name=name)
    thread.start()
    return thread


def run(root: Path, *, quick: bool, only: str | None) -> tuple[dict[str, Any], list[str], list[str]]:
    """Both halves at once, each starting its own services in its thread; (counts, failures, notes)."""
    counts: dict[str, Any] = {}
    failures: list[str] = []
    services: list[Postgres | Mosquitto] = []
    halves: list[IngestChaos | BillingChaos] = []
    if only in (None, "ingest"):
        pg, broker = Postgres(root / "pg-ingest"), Mosquitto(root / "mosquitto", debug_log=True)
        services += [pg, broker]
        halves.append(IngestChaos(root / "ingest", pg, broker, IngestPlan.of(quick)))
    if only in (None, "billing"):
        pg_bill = Postgres(root / "pg-billing")
        services.append(pg_bill)
        halves.append(BillingChaos(root / "billing", pg_bill, quick))

    def start_and_run(half: IngestChaos | BillingChaos) -> dict[str, Any]:
        half.root.mkdir()
        half.pg.start()
        if isinstance(half, IngestChaos):
            half.broker.start()
        return half.run()

    try:
        threads = [_in_thread(type(h).__name__, partial(start_and_run, h), counts, failures) for h in halves]
        for t in threads:
            t.join()
    finally:
        for s in reversed(services):
            s.stop()
    failures += [f for h in halves for f in h.failures]
    return counts, failures, [n for h in halves for n in h.notes]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short outages, a small fleet and a small billing run")
    parser.add_argument("--only", choices=("ingest", "billing"), help="run one half")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (logs, data)")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="amiflow-chaos-", dir="/tmp"))
    os.chmod(root, 0o755)  # the private servers run as their own users and must reach their directories
    t0 = time.monotonic()
    counts, failures, notes = run(root, quick=args.quick, only=args.only)
    elapsed = time.monotonic() - t0
    for failure in failures:
        print(f"FAILED: {failure}")
    for note in notes:
        print(f"note: {note}")
    if failures or args.keep:
        print(f"logs and data kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    keys = ("published", "stored", "duplicates", "quarantined", "broker_dropped", "quarantined_messages",
            "quarantine_rows", "broker_dropped_messages", "witness_messages", "conflicts", "meters", "bills",
            "bill_items", "outbox_items", "delivered", "receiver_keys", "receiver_repeats",
            "receiver_conflicts")  # fmt: skip
    figures = " ".join(f"{k}={counts[k]}" for k in keys if k in counts)
    print(f"RESULT chaos {figures} failures={len(failures)} elapsed_s={elapsed:.0f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
