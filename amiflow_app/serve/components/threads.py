"""What the components share: a stoppable sleep, a blocking call run in a thread as a future, Prometheus counters."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["counters", "in_thread", "wait"]


async def wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` or until ``stop``; True when stopped."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max(seconds, 0.0))
    return stop.is_set()


def in_thread(fn: Callable[[], Any], name: str) -> asyncio.Future[Any]:
    """Run ``fn`` in a new daemon thread; the future resolves with its result or exception (on the calling loop)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, exc: BaseException | None) -> None:
        if future.done():
            return
        if exc is None:
            future.set_result(result)
        else:
            future.set_exception(exc)

    def target() -> None:
        try:
            result = fn()
        except BaseException as exc:  # handed to the supervisor through the future
            with contextlib.suppress(RuntimeError):  # the loop is already closed: nobody is waiting any more
                loop.call_soon_threadsafe(settle, None, exc)
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=target, name=name, daemon=True).start()
    return future


def counters(prefix: str, help_by_name: dict[str, str], values: dict[str, int]) -> str:
    out = []
    for key, help_ in help_by_name.items():
        name = f"{prefix}_{key}_total"
        out.append(f"# HELP {name} {help_}\n# TYPE {name} counter\n{name} {values.get(key, 0)}\n")
    return "".join(out)
