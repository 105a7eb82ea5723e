"""An in-memory link pair (a null modem): the fake that unit tests put under a codec's client, no sockets."""

from __future__ import annotations

import asyncio

from amiflow.errors import TransportError

from .links import Link, SerialSettings

__all__ = ["MemoryLink", "null_modem"]


class MemoryLink(Link):
    """An in-memory link (one end of a :func:`null_modem`): a fake for unit tests, no sockets."""

    def __init__(self, peer: str = "memory", *, timeout_s: float = 1.0) -> None:
        super().__init__(peer, timeout_s=timeout_s)
        self._inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._buffer = b""
        self.other: MemoryLink | None = None
        self.serial_changes: list[SerialSettings] = []
        self.closed_by_peer = False

    async def _open(self) -> None:
        pass

    async def _close(self) -> None:
        if self.other is not None:
            self.other._inbox.put_nowait(b"")

    async def write(self, data: bytes) -> None:
        if not self._open_now or self.other is None:
            raise TransportError(f"{self.peer}: link is not open")
        if data:
            self.other._inbox.put_nowait(bytes(data))

    async def _read(self, max_bytes: int) -> bytes:
        if not self._buffer:
            self._buffer = await self._inbox.get()
            if not self._buffer:
                return b""
        data, self._buffer = self._buffer[:max_bytes], self._buffer[max_bytes:]
        return data

    async def set_serial(self, baudrate: int, bytesize: int = 8, parity: str = "N", stopbits: float = 1) -> None:
        self.serial_changes.append((baudrate, bytesize, parity, stopbits))


def null_modem(*, timeout_s: float = 1.0) -> tuple[MemoryLink, MemoryLink]:
    """Two connected in-memory links: what one writes, the other reads."""
    a, b = MemoryLink("memory:a", timeout_s=timeout_s), MemoryLink("memory:b", timeout_s=timeout_s)
    a.other, b.other = b, a
    return a, b
