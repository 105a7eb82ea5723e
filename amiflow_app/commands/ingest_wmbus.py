"""``amiflow ingest wmbus --from -|tcp://HOST:PORT|serial:///dev/ttyX``: the wireless M-Bus receiver.

Argument parsing, signals and the summary only; the work is :class:`ingest.wmbus_ingest.WmbusIngest` (frames from
:mod:`ingest.wmbus_sources`, decoded against the registry's wmbus meters and keys, stored through
:class:`ingest.wmbus_store.WmbusStore`, spooled under ``AMIFLOW_DATA_DIR/spool-wmbus`` while the database is away).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys

from amiflow.db import open_database
from amiflow.settings import Settings
from amiflow_app.command import Command

__all__ = ["INGEST_WMBUS"]


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="SOURCE",
        help="- (standard input), tcp://HOST:PORT (a gateway) or serial:///dev/ttyUSB0?baud=9600 (a stick)",
    )
    p.add_argument("--format", choices=("hex", "raw"), help="hex lines (default, except serial) or raw frames")
    p.add_argument("--once", action="store_true", help="stop when a TCP or serial stream ends (default: reconnect)")
    p.add_argument("--name", default="", help="the spool's name (default from --from): one per receiver on a host")
    p.add_argument("--repeat-window", type=float, default=3600.0, metavar="S",
                   help="the same frame heard again within S seconds is a repeat (default 3600)")  # fmt: skip


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.spool import Spool
    from ingest.validate import Bounds
    from ingest.wmbus_ingest import WmbusIngest
    from ingest.wmbus_sources import default_mode, open_source
    from ingest.wmbus_store import WmbusStore

    mode = args.format or default_mode(args.source)
    name = args.name or re.sub(r"[^A-Za-z0-9_.-]+", "_", args.source).strip("_") or "stdin"
    spool = Spool(settings.data_dir / "spool-wmbus" / name, max_bytes=settings.spool_max_bytes)
    bounds = Bounds(settings.clock_skew_future_s, settings.reading_horizon_days)
    with open_database(settings) as db:
        store = WmbusStore(db.url, bounds=bounds)
        spool.open()
        receiver = WmbusIngest(store, spool, mode=mode, latency_s=settings.ingest_batch_max_latency_s,
                               repeat_window_s=args.repeat_window)  # fmt: skip

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            async with open_source(args.source, once=args.once) as read:
                await receiver.run(read, stop)

        try:
            asyncio.run(main())
        finally:
            store.close()
            spool.close()
    c = receiver.counts
    quarantined = ", ".join(f"{k} {v}" for k, v in sorted(c.quarantined.items())) or "none"
    print(f"wM-Bus: {c.frames} frames heard ({c.repeated} repeats, {c.unframed_bytes} unframed bytes skipped);"
          f" {c.stored} readings stored, {c.duplicates} duplicates, {c.conflicts} conflicts; quarantined:"
          f" {quarantined}; {c.spooled} frames spooled, {c.replayed} replayed", file=sys.stderr)  # fmt: skip
    return 0


INGEST_WMBUS = Command(
    "receive wireless M-Bus frames (hex lines or a stick's raw frames), decode them with the registry's keys and"
    " store the readings of registered wmbus meters; everything else is quarantined",
    _arguments,
    _run,
)
