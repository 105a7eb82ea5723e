"""The registry's M-Bus keys for the poller: a cached lookup by meter name, and the session factory that uses it.

:func:`registry_sessions` is :func:`~ingest.meter_sessions.open_session` with one difference: an M-Bus meter's
session gets the meter's AES key from ``amiflow.meter_keys`` (migration 0016; only the ingest role and the owner may
read it), so encrypted wired meters (OMS security mode 5) decode. Keys are reloaded at most once a minute on a short
connection of their own, in the session's worker thread; nothing here logs, and no message holds a key.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Final

import psycopg

from amiflow.db.meter_keys import MeterKey, load_meter_keys
from amiflow.errors import StorageError
from amiflow.uri import MeterUri
from ingest.mbus_session import MbusSession
from ingest.meter_sessions import MeterSession, SessionFactory, open_session

__all__ = ["KEY_TTL_S", "RegistryKeys", "key_sessions", "registry_sessions"]

KEY_TTL_S: Final = 60.0  # a key set with `amiflow meters set-key` is used within a minute


class RegistryKeys:
    """The registry's M-Bus keys by meter name, reloaded when older than ``ttl_s``; ``connect`` opens a connection
    (a short one per reload, closed again). ``repr`` says how many keys it holds, never which."""

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        *,
        ttl_s: float = KEY_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connect = connect
        self._ttl_s = ttl_s
        self._clock = clock
        self._keys: dict[str, MeterKey] = {}
        self._loaded_at: float | None = None
        self._lock = threading.Lock()

    def __call__(self, meter: str) -> MeterKey | None:
        """The meter's key (blocking: call it in a worker thread)."""
        with self._lock:
            now = self._clock()
            if self._loaded_at is None or now - self._loaded_at > self._ttl_s:
                try:
                    with self._connect() as conn:
                        self._keys = load_meter_keys(conn)
                except psycopg.Error as exc:  # a SELECT of keys: the server's message quotes no key
                    cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    raise StorageError(f"meter {meter}: cannot read its M-Bus key: {cause}") from None
                self._loaded_at = now
            return self._keys.get(meter)

    def __repr__(self) -> str:
        return f"RegistryKeys({len(self._keys)} keys)"


def registry_sessions(url: str) -> SessionFactory:
    """The poller's session factory: :func:`~ingest.meter_sessions.open_session`, with each M-Bus meter's key
    from the registry at ``url``."""
    keys = RegistryKeys(lambda: psycopg.connect(url, autocommit=True, application_name="amiflow-mbus-keys"))

    def open_one(meter: str, uri: MeterUri, timeout_s: float) -> MeterSession:
        if uri.protocol == "mbus":
            return MbusSession(meter, uri, timeout_s, keys=keys)
        return open_session(meter, uri, timeout_s)

    return open_one


def key_sessions(key: MeterKey) -> SessionFactory:
    """:func:`~ingest.meter_sessions.open_session`, with ``key`` for an M-Bus meter: one meter whose key is known
    before it is registered (``amiflow commission --key-file``, the demo's commissioning)."""

    def open_one(meter: str, uri: MeterUri, timeout_s: float) -> MeterSession:
        if uri.protocol == "mbus":
            return MbusSession(meter, uri, timeout_s, key=key)
        return open_session(meter, uri, timeout_s)

    return open_one
