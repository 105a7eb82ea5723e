"""Where ``amiflow ingest wmbus`` hears frames from: ``-`` (standard input), ``tcp://HOST:PORT`` (a gateway, or
rtl-wmbus behind ``nc -l``) or ``serial:///dev/ttyUSB0?baud=9600`` (a stick: 8N1 unless the URI says
``bytesize``, ``parity``, ``stopbits``). :func:`open_source` returns an async context manager whose value reads the
next chunk (``b""`` at the end). TCP and serial links are opened again after a drop (jittered backoff, 1 s to 30 s)
unless ``once``: then the end of the stream ends the receiver, as it always does for standard input.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import BinaryIO
from urllib.parse import parse_qsl, urlsplit

from amiflow.errors import ConfigError, ConnectError, ReadTimeout, TransportError
from amiflow.uri import MeterUri
from protocols.transport.links import Link, SerialLink, TcpLink, serial_settings

__all__ = ["default_mode", "open_source"]

log = logging.getLogger(__name__)

ByteSource = Callable[[], Awaitable[bytes]]


def default_mode(where: str) -> str:
    """Sticks send raw frames; standard input and TCP gateways hex lines."""
    return "raw" if where.startswith("serial:") else "hex"


def _link(where: str) -> Link:
    try:
        parts = urlsplit(where)
        port = parts.port
    except ValueError:
        raise ConfigError(f"--from {where!r}: expected -, tcp://HOST:PORT or serial:///dev/ttyX") from None
    if parts.scheme == "tcp" and parts.hostname and port:
        return TcpLink(parts.hostname, port, timeout_s=10.0, peer=where)
    if parts.scheme == "serial" and parts.path.startswith("/") and not parts.netloc:
        params = dict(parse_qsl(parts.query))
        uri = MeterUri(where, "serial", "wmbus", "serial", path=parts.path, params=params)
        return SerialLink(parts.path, serial_settings(uri), timeout_s=10.0, peer=where)
    raise ConfigError(f"--from {where!r}: expected -, tcp://HOST:PORT or serial:///dev/ttyX")


@contextlib.asynccontextmanager
async def open_source(where: str, *, once: bool = False, stdin: BinaryIO | None = None) -> AsyncIterator[ByteSource]:
    """The chunk reader of ``where``; a link is opened here and always closed on the way out."""
    if where == "-":
        stream = stdin or sys.stdin.buffer

        async def read_stdin() -> bytes:
            read1 = getattr(stream, "read1", stream.read)
            return bytes(await asyncio.to_thread(read1, 65536))

        yield read_stdin
        return
    link = _link(where)
    state = {"open": False, "delay": 1.0}

    async def read_link() -> bytes:
        while True:
            if not state["open"]:
                try:
                    await link.__aenter__()
                except ConnectError as exc:
                    if once:
                        raise
                    await _pause(state, f"{exc}")
                    continue
                state["open"], state["delay"] = True, 1.0
            try:
                return await link.read(65536, timeout_s=3600.0)
            except ReadTimeout:
                continue  # radio is quiet
            except TransportError as exc:
                await link.__aexit__(None, None, None)
                state["open"] = False
                if once:
                    return b""
                await _pause(state, f"{exc}")

    try:
        yield read_link
    finally:
        if state["open"]:
            await link.__aexit__(None, None, None)


async def _pause(state: dict[str, float | bool], why: str) -> None:
    delay = float(state["delay"])
    log.warning("%s; reconnecting in %.1f s", why, delay)
    await asyncio.sleep(delay * random.uniform(0.5, 1.0))
    state["delay"] = min(30.0, delay * 2)
