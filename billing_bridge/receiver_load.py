"""Load against the billing receiver: start one in a child process, and measure its maximum request rate.

:func:`spawn_receiver` runs ``python -m billing_bridge.receiver`` on a free port (the receiver prints
``LISTENING url``); :func:`measure_max_rate` drives it with a plain concurrent httpx load through the dispatcher's
client pool (:class:`billing_bridge.sinks.ClientShards`), no database, so a benchmark can tell the receiver's ceiling
from the bridge's rate.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

from billing_bridge.delivery import canonical_body, sign
from billing_bridge.sinks import ClientShards

__all__ = ["measure_max_rate", "spawn_receiver"]


def spawn_receiver(secret: bytes, *, extra_args: tuple[str, ...] = ()) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m billing_bridge.receiver`` on a free port in a child process; returns (process, url)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "billing_bridge.receiver", "--port", "0", "--secret", secret.decode(), *extra_args],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("LISTENING "):
        proc.kill()
        raise RuntimeError(f"billing receiver failed to start: {line!r}")
    return proc, line.split(" ", 1)[1]


async def _load(url: str, secret: bytes, n: int, concurrency: int) -> float:
    run = time.monotonic_ns()
    async with ClientShards(concurrency, 30.0) as shards:

        async def one(i: int) -> None:
            body = canonical_body({"bill_id": f"max-{i}", "total": "1.00", "account": f"A{i % 1000}"})
            headers = {"Idempotency-Key": f"max-rate-{run}-{i}", "X-Amiflow-Signature": sign(body, secret)}
            async with shards.slot() as client:
                response = await client.post(url + "/bills", content=body, headers=headers)
            response.raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return n / (time.perf_counter() - start)


def measure_max_rate(url: str, secret: bytes, n: int = 10_000, concurrency: int = 64) -> float:
    """Requests per second a plain concurrent httpx load (the dispatcher's client, no database) gets from ``url``."""
    return asyncio.run(_load(url, secret, n, concurrency))
