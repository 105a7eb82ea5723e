"""The byte-stream side shared by the serial-protocol simulators: listen on loopback TCP or open a pty pair, keep the
session tasks, and release everything on stop. Subclasses provide the protocol: ``_on_tcp`` and ``_serve_pty``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import Awaitable
from typing import Any, Self

__all__ = ["ByteServer", "pty_inbox", "pty_write"]


def pty_inbox(master: int) -> asyncio.Queue[bytes]:
    """What arrives on a pty master, chunk by chunk (a reader on the running loop; ByteServer removes it on stop)."""
    inbox: asyncio.Queue[bytes] = asyncio.Queue()

    def readable() -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            data = os.read(master, 4096)
            if data:
                inbox.put_nowait(data)

    asyncio.get_running_loop().add_reader(master, readable)
    return inbox


async def pty_write(master: int, data: bytes) -> None:
    """Write all of ``data`` to a non-blocking pty master, waiting while its buffer is full."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(master, view) :]
        except BlockingIOError:
            await asyncio.sleep(0.005)


class ByteServer:
    """Set ``kind`` ("tcp" or "pty"), ``host`` and ``port`` before :meth:`start`; ``pty_path`` is known after it."""

    kind: str
    host: str
    port: int
    pty_path: str | None

    def _init_server(self) -> None:
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._fds: tuple[int, int] | None = None

    @property
    def uri(self) -> str:
        """The meter URI a client uses to reach the simulator (known after :meth:`start`)."""
        raise NotImplementedError

    async def _on_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def _serve_pty(self, master: int) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        """Listen (TCP) or open the pty, and serve in the background."""
        if self.kind == "tcp":
            self._server = await asyncio.start_server(self._on_tcp, self.host, self.port)
            self.port = self._server.sockets[0].getsockname()[1]
            return
        master, slave = os.openpty()
        tty.setraw(slave)  # bytes through unchanged: no echo, no CR/LF translation
        os.set_blocking(master, False)
        self._fds = (master, slave)  # the slave stays open here so the master never sees EIO between clients
        self.pty_path = os.ttyname(slave)
        self._spawn(self._serve_pty(master))

    async def stop(self) -> None:
        """Close the listener or pty and end every session."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None
        if self._fds is not None:
            master, slave = self._fds
            self._fds = None
            with contextlib.suppress(OSError, RuntimeError):
                asyncio.get_running_loop().remove_reader(master)
            for fd in (master, slave):
                with contextlib.suppress(OSError):
                    os.close(fd)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _adopt_current_task(self) -> None:
        """Count the running connection handler among the sessions that stop() ends."""
        task: Any = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
