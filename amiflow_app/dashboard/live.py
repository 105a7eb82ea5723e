"""One refresh loop shared by every open dashboard.

While at least one page watches, :class:`FigureHub` gathers the figures every ``every_s`` seconds (in a worker
thread: the queries are blocking) and hands each watcher the newest message. A slow watcher skips to the latest
message rather than queueing old ones, and the database load does not grow with the number of pages open. With
nobody watching, nothing runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

__all__ = ["FigureHub", "Message"]

log = logging.getLogger(__name__)

Message = dict[str, Any]
_LOG_EVERY_S = 60.0


class FigureHub:
    """Calls ``gather`` (blocking; returns a JSON-ready message) every ``every_s`` s while someone watches."""

    def __init__(self, gather: Callable[[], Message], *, every_s: float = 2.0) -> None:
        self._gather = gather
        self.every_s = every_s
        self._watchers: set[asyncio.Queue[Message]] = set()
        self._task: asyncio.Task[None] | None = None
        self._latest: tuple[float, Message] | None = None
        self._logged_at = -_LOG_EVERY_S
        self.failures = 0

    @asynccontextmanager
    async def watch(self) -> AsyncIterator[asyncio.Queue[Message]]:
        """A queue that always holds the newest message not yet taken (the first one at once when fresh)."""
        queue: asyncio.Queue[Message] = asyncio.Queue(maxsize=1)
        if self._latest is not None and time.monotonic() - self._latest[0] < self.every_s:
            queue.put_nowait(self._latest[1])
        self._watchers.add(queue)
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._run(), name="dashboard-figures")
        try:
            yield queue
        finally:
            self._watchers.discard(queue)

    async def _run(self) -> None:
        while self._watchers:
            message = await asyncio.to_thread(self._gather_safely)
            self._latest = (time.monotonic(), message)
            for queue in list(self._watchers):
                _offer(queue, message)
            await asyncio.sleep(self.every_s)

    def _gather_safely(self) -> Message:
        try:
            return self._gather()
        except Exception as exc:  # the page must keep running (and say why) while the database is away
            self.failures += 1
            if time.monotonic() - self._logged_at >= _LOG_EVERY_S:
                self._logged_at = time.monotonic()
                log.warning("dashboard: the figures could not be gathered (%d times so far): %s", self.failures, exc)
            return {"type": "error", "at": datetime.now(UTC).isoformat(), "detail": _one_line(exc)}


def _offer(queue: asyncio.Queue[Message], message: Message) -> None:
    """Put ``message``, replacing an older one the watcher has not taken yet."""
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(message)


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else 'no detail'}"
