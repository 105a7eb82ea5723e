"""Persisted invocation counters for DLMS ciphering (HLS-GMAC, security suite 0).

A key's invocation counter must never be used twice, across restarts too: a meter refuses a counter that is not
above the last one it accepted, and a reused (IV, key) pair breaks AES-GCM. :class:`FileCounterStore` hands out
counters from memory and reserves them on disk in blocks: before the first counter of a block is returned, the end
of the block is written (temporary file, fsync, atomic rename), so a crash only skips unused counters and never
repeats one. One JSON file holds every key's high-water mark, keyed by a name such as ``meter:client-sap``.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Protocol

from amiflow.errors import ConfigError, StorageError

__all__ = ["CounterStore", "FileCounterStore", "MemoryCounterStore"]

MAX_COUNTER = 0xFFFFFFFF


class CounterStore(Protocol):
    """Hands out strictly increasing invocation counters per key."""

    def next(self, key: str) -> int: ...

    def observe(self, key: str, counter: int) -> None: ...


class MemoryCounterStore:
    """Counters in memory only (tests, and peers whose counter is kept by someone else)."""

    def __init__(self) -> None:
        self._next: dict[str, int] = {}

    def next(self, key: str) -> int:
        value = self._next.get(key, 0)
        if value > MAX_COUNTER:
            raise ConfigError(f"invocation counter of {key} exhausted: renew the key")
        self._next[key] = value + 1
        return value

    def observe(self, key: str, counter: int) -> None:
        """Never hand out ``counter`` or anything below it (for example after the meter reported its last one)."""
        self._next[key] = max(self._next.get(key, 0), counter + 1)


class FileCounterStore:
    """Counters persisted in ``path`` (JSON ``{key: first counter not yet reserved}``), reserved ``block`` at a time."""

    def __init__(self, path: str | Path, *, block: int = 64) -> None:
        if block < 1:
            raise ConfigError(f"counter block {block}: must be at least 1")
        self.path = Path(path)
        self.block = block
        self._lock = threading.Lock()
        self._next: dict[str, int] = {}
        self._reserved: dict[str, int] = self._load()

    def _load(self) -> dict[str, int]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise StorageError(f"invocation counters {self.path}: unreadable ({exc}); fix or restore it") from exc
        if not isinstance(raw, dict) or not all(isinstance(v, int) and v >= 0 for v in raw.values()):
            raise StorageError(f"invocation counters {self.path}: expected an object of non-negative integers")
        return {str(k): int(v) for k, v in raw.items()}

    def _save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w") as fh:
                json.dump(self._reserved, fh, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise StorageError(f"invocation counters {self.path}: cannot persist ({exc})") from exc

    def next(self, key: str) -> int:
        """The next counter of ``key``; persisted (as part of a reserved block) before it is returned."""
        with self._lock:
            value = self._next.get(key, self._reserved.get(key, 0))
            if value > MAX_COUNTER:
                raise ConfigError(f"invocation counter of {key} exhausted: renew the key")
            if value >= self._reserved.get(key, 0):
                self._reserved[key] = min(value + self.block, MAX_COUNTER + 1)
                self._save()
            self._next[key] = value + 1
            return value

    def observe(self, key: str, counter: int) -> None:
        """Skip past ``counter`` (persisted at once)."""
        with self._lock:
            if counter + 1 > self._next.get(key, self._reserved.get(key, 0)):
                self._next[key] = counter + 1
                self._reserved[key] = max(self._reserved.get(key, 0), counter + 1)
                self._save()
