"""What the simulator commands share: the ``--start`` parser, the serve-until-signalled loop and its signal handling,
the ``--wiring`` help."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from datetime import UTC, datetime

from amiflow.errors import ConfigError
from simulators.byte_server import ByteServer

__all__ = ["WIRING_HELP", "parse_start", "serve_until_signalled", "stop_on_signals"]


def parse_start(text: str) -> datetime:
    try:
        start = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--start {text!r}: expected ISO 8601 such as 2026-11-01T00:00:00Z") from None
    if start.tzinfo is None:
        raise ConfigError(f"--start {text!r}: give an offset or Z (for example 2026-11-01T00:00:00Z)")
    return start.astimezone(UTC)


def stop_on_signals() -> asyncio.Event:
    """An event that SIGTERM or SIGINT sets (call it in the running event loop): a simulator stops cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def serve_until_signalled(sim: ByteServer, label: str, *, on_start: Callable[[], None] | None = None) -> None:
    """Serve, print where (after ``on_start``, which may use the simulator's URI), stop on SIGTERM or SIGINT."""

    async def main() -> None:
        stop = stop_on_signals()
        async with sim:
            if on_start is not None:
                on_start()
            where = f"port {sim.port}" if sim.kind == "tcp" else f"pty {sim.pty_path}"
            print(f"{label} listening on {where}: {sim.uri}", flush=True)
            await stop.wait()

    asyncio.run(main())


WIRING_HELP = (
    "installation faults for commissioning tests, e.g. reversed_ct=2,phase_order=132,voltage=195,frequency=51.2,"
    "pf=0.4,ct_ratio=200/5,relay=open (simulators/wiring.py; default: correctly installed)"
)
