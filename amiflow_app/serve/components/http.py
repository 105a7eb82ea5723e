"""The HTTP API component: uvicorn on a socket bound before start, so a taken port fails at once."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

from amiflow.errors import ConfigError

__all__ = ["ApiComponent"]


class ApiComponent:
    """uvicorn serving the FastAPI app on a socket bound before start (so a taken port fails at once)."""

    name = "api"

    def __init__(self, app: Any, host: str, port: int, *, grace_s: float) -> None:
        self._app = app
        self._host = host
        self._grace_s = grace_s
        self._sock: socket.socket | None = self._bind(port)
        self.port: int = self._sock.getsockname()[1]
        self.started = threading.Event()

    def _bind(self, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self._host, port))
        except OSError as exc:
            sock.close()
            raise ConfigError(
                f"AMIFLOW_HTTP_HOST/PORT {self._host}:{port}: cannot listen ({exc.strerror}); choose another port"
            ) from exc
        sock.listen(128)
        sock.set_inheritable(True)
        return sock

    async def run(self, stop: asyncio.Event) -> None:
        import uvicorn

        sock = self._sock if self._sock is not None else self._bind(self.port)
        self._sock = None  # uvicorn closes it on shutdown: a restart binds the same port again
        config = uvicorn.Config(
            self._app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=max(1, int(self._grace_s)),
        )
        server = uvicorn.Server(config)
        stopped = asyncio.ensure_future(stop.wait())
        stopped.add_done_callback(lambda _: setattr(server, "should_exit", True))
        watch = asyncio.ensure_future(self._watch_started(server))
        try:
            await server.serve(sockets=[sock])
        except SystemExit as exc:  # uvicorn exits the process on a startup failure: make it a restartable crash
            raise RuntimeError(f"the HTTP server failed to start (exit {exc.code})") from exc
        finally:
            stopped.cancel()
            watch.cancel()
            sock.close()
        if not stop.is_set():
            raise RuntimeError("the HTTP server stopped by itself")

    async def _watch_started(self, server: Any) -> None:
        while not server.started:
            await asyncio.sleep(0.02)
        self.started.set()

    def problem(self) -> str | None:
        return None

    def prometheus(self) -> str:
        return ""

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
