"""Two pseudo-terminals joined back to back in this process: a null-modem cable for serial simulators and tests.

A server opens one end (``server_path``), a client the other (``client_path``); the bytes are copied both ways by
the running event loop, and a ``tamper`` callable may change what flows from the server to the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import Callable

__all__ = ["PtyBridge"]


class PtyBridge:
    """Two ptys joined back to back: a server opens ``server_path``, a client ``client_path``; bytes flow both
    ways through this process (a null-modem cable). ``tamper(data) -> data`` may change server-to-client bytes."""

    def __init__(self, tamper: Callable[[bytes], bytes] | None = None) -> None:
        self._tamper = tamper
        self._fds: list[int] = []
        self.server_path = self.client_path = ""
        self._master_s = self._master_c = -1

    def open(self) -> None:
        ms, ss = os.openpty()
        mc, sc = os.openpty()
        for fd in (ms, ss, mc, sc):
            tty.setraw(fd)
        self._fds = [ms, ss, mc, sc]
        self._master_s, self._master_c = ms, mc
        self.server_path, self.client_path = os.ttyname(ss), os.ttyname(sc)
        loop = asyncio.get_running_loop()
        os.set_blocking(ms, False)
        os.set_blocking(mc, False)
        loop.add_reader(ms, self._pump, ms, mc, True)
        loop.add_reader(mc, self._pump, mc, ms, False)

    def _pump(self, src: int, dst: int, from_server: bool) -> None:
        try:
            data = os.read(src, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # the other side closed its end; a client may reopen it
        if from_server and self._tamper is not None:
            data = self._tamper(data)
        if data:
            with contextlib.suppress(OSError):
                os.write(dst, data)

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for fd in (self._master_s, self._master_c):
            if fd >= 0:
                loop.remove_reader(fd)
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []
        self._master_s = self._master_c = -1
