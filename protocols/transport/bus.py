"""One request at a time per shared medium: RTU is half duplex, and TCP gateways in front of buses behave the same.

A bus is keyed by the device path of its RS-485 line (``serial:/dev/ttyUSB0``) or by its gateway (``tcp:host:port``).
"""

from __future__ import annotations

import asyncio
import weakref

from amiflow.uri import MeterUri

__all__ = ["BusLock", "bus_key"]


def bus_key(uri: MeterUri) -> str:
    """The shared medium of a meter: the device path of its bus or the ``host:port`` of its gateway."""
    if uri.link == "serial" and uri.path is not None:
        return f"serial:{uri.path}"
    return f"tcp:{uri.host}:{uri.port}"


class BusLock:
    """One request at a time per bus or gateway: ``async with bus_lock.hold(uri): ...``.

    Locks are created on demand per key and per event loop (an asyncio.Lock belongs to one loop).
    """

    def __init__(self) -> None:
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
            weakref.WeakKeyDictionary()
        )

    def lock(self, key: str | MeterUri) -> asyncio.Lock:
        """The lock of a bus (a key from :func:`bus_key`, or a meter URI)."""
        name = bus_key(key) if isinstance(key, MeterUri) else key
        per_loop = self._locks.setdefault(asyncio.get_running_loop(), {})
        lock = per_loop.get(name)
        if lock is None:
            lock = per_loop[name] = asyncio.Lock()
        return lock

    def hold(self, key: str | MeterUri) -> asyncio.Lock:
        """``async with bus.hold(uri):`` runs the body alone on that bus."""
        return self.lock(key)

    def busy(self, key: str | MeterUri) -> bool:
        return self.lock(key).locked()
