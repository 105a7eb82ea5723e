"""A durable local spool: raw MQTT messages kept on disk while PostgreSQL is unreachable.

Layout under ``{data_dir}/spool``: segment files ``seg-{n:012d}.log`` holding records, and ``cursor`` naming how far
replay has got (``{segment} {offset}``, replaced atomically). One record::

    magic  b"AS"  | length u32 (body bytes) | crc32 u32 (of body) | body
    body = received_at f64 | topic length u16 | topic utf-8 | payload

All integers big-endian. :meth:`Spool.append` writes a whole batch and ``fsync``s file and directory before it
returns, so a message may be acknowledged to the broker once ``append`` has returned. A record cut short by a crash
(only ever the tail of the last segment: it was not acknowledged, the broker redelivers it) is truncated on open.
A bad checksum elsewhere stops replay of that segment, which is renamed ``*.corrupt`` for an operator.
Replay re-reads records in append order; the store key (meter, channel, ts) makes a repeated replay harmless.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from amiflow.errors import StorageError

__all__ = ["SpoolFull", "SpoolRecord", "Spool"]

log = logging.getLogger(__name__)

_MAGIC = b"AS"
_HEAD = struct.Struct(">2sII")
_BODY = struct.Struct(">dH")
_SEGMENT_BYTES = 64 << 20
_RESERVE_BYTES = 256 << 10  # left free on the spool's disk: replay must still be able to write its cursor


class SpoolFull(StorageError):
    """The spool reached its size bound: stop acknowledging so the broker keeps the messages."""


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    """One spooled message; ``position`` is where the next record starts (segment, offset)."""

    topic: str
    payload: bytes
    received_at: float
    position: tuple[int, int]


def encode_record(topic: str, payload: bytes, received_at: float) -> bytes:
    """The on-disk bytes of one record."""
    t = topic.encode()
    body = _BODY.pack(received_at, len(t)) + t + payload
    return _HEAD.pack(_MAGIC, len(body), zlib.crc32(body)) + body


def _decode(buf: bytes, pos: int) -> tuple[str, bytes, float, int] | None:
    """Decode the record at ``pos``; None if incomplete or corrupt."""
    if len(buf) - pos < _HEAD.size:
        return None
    magic, length, crc = _HEAD.unpack_from(buf, pos)
    start = pos + _HEAD.size
    body = buf[start : start + length]
    if magic != _MAGIC or len(body) < length or length < _BODY.size or zlib.crc32(body) != crc:
        return None
    received_at, tlen = _BODY.unpack_from(body, 0)
    topic = body[_BODY.size : _BODY.size + tlen].decode("utf-8", "replace")
    return topic, bytes(body[_BODY.size + tlen :]), received_at, start + length


class Spool:
    """Append-only, checksummed, fsync'd message spool with an atomic replay cursor; bounded by ``max_bytes``.

    Not thread-safe: one owner (the ingest worker's store thread) appends, replays and commits.
    """

    def __init__(self, directory: Path, *, max_bytes: int, segment_bytes: int = _SEGMENT_BYTES) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._opened = False
        self._lock_fd: int | None = None
        self._cursor = (0, 0)
        self._sizes: dict[int, int] = {}

    # -- opening -------------------------------------------------------------------------------------------------
    def open(self) -> None:
        """Create the directory, lock it for this process, read the cursor, truncate a torn tail. Idempotent.

        Raises StorageError when another process holds the spool (two workers must not share one)."""
        if self._opened:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise StorageError(
                    f"spool {self.directory} is in use by another process: give each worker its own client id"
                ) from None
            self._lock_fd = fd
            self._cursor = self._read_cursor()
            for seg in self._segments():
                self._sizes[seg] = (self.directory / _name(seg)).stat().st_size
            if self._sizes:
                self._repair_tail(max(self._sizes))
            for seg in [s for s in self._sizes if s < self._cursor[0]]:
                self._drop(seg)
        except OSError as exc:
            raise StorageError(f"spool {self.directory}: {exc}") from exc
        self._opened = True

    def close(self) -> None:
        """Release the lock (the data stays for the next open)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self._opened = False
        self._sizes.clear()

    def _segments(self) -> list[int]:
        out = []
        for p in self.directory.glob("seg-*.log"):
            try:
                out.append(int(p.stem[4:]))
            except ValueError:
                continue
        return sorted(out)

    def _read_cursor(self) -> tuple[int, int]:
        try:
            seg, off = (self.directory / "cursor").read_text().split()
            return int(seg), int(off)
        except FileNotFoundError:
            return (0, 0)
        except ValueError:
            log.error("spool cursor unreadable in %s; replaying from the first segment", self.directory)
            return (0, 0)

    def _repair_tail(self, seg: int) -> None:
        path = self.directory / _name(seg)
        buf = path.read_bytes()
        pos = 0
        while (rec := _decode(buf, pos)) is not None:
            pos = rec[3]
        if pos < len(buf):
            log.warning("spool %s: truncating %d bytes of an unfinished record", path, len(buf) - pos)
            with path.open("r+b") as f:
                f.truncate(pos)
                os.fsync(f.fileno())
            self._sizes[seg] = pos

    # -- size --------------------------------------------------------------------------------------------------------
    @property
    def size_bytes(self) -> int:
        """Bytes on disk in segments not yet fully replayed."""
        return sum(self._sizes.values())

    @property
    def pending_bytes(self) -> int:
        """Bytes not yet replayed (spool depth)."""
        seg, off = self._cursor
        return sum(size - (off if s == seg else 0) for s, size in self._sizes.items() if s >= seg)

    def __bool__(self) -> bool:
        return self.pending_bytes > 0

    # -- append ------------------------------------------------------------------------------------------------------
    def append(self, messages: Iterable[tuple[str, bytes, float]]) -> int:
        """Append (topic, payload, received_at) messages durably; returns bytes written.

        Raises SpoolFull (nothing written) when the batch would pass ``max_bytes``, StorageError on I/O failure.
        """
        self.open()
        data = b"".join(encode_record(t, p, r) for t, p, r in messages)
        if not data:
            return 0
        if self.size_bytes + len(data) > self.max_bytes:
            raise SpoolFull(
                f"spool {self.directory} is full ({self.size_bytes} of {self.max_bytes} bytes); "
                "messages stay unacknowledged at the broker"
            )
        self._check_disk(len(data))
        seg = max(self._sizes) if self._sizes else self._cursor[0] + 1
        if self._sizes.get(seg, 0) >= self._segment_bytes:
            seg += 1
        path = self.directory / _name(seg)
        try:
            new = seg not in self._sizes
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except OSError:
                # a part of the batch may be on disk: cut it off, or the next batch would follow a torn record
                # and replay would stop there (the segment set aside as corrupt, acknowledged messages in it)
                os.ftruncate(fd, self._sizes.get(seg, 0))
                raise
            finally:
                os.close(fd)
            if new:
                _fsync_dir(self.directory)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise SpoolFull(f"spool {path}: the disk is full ({exc.strerror}); messages stay unacknowledged at "
                                "the broker") from exc  # fmt: skip
            raise StorageError(f"spool {path}: write failed: {exc}") from exc
        self._sizes[seg] = self._sizes.get(seg, 0) + len(data)
        return len(data)

    def _check_disk(self, n: int) -> None:
        """SpoolFull when writing ``n`` bytes would leave less than the reserve free on the spool's disk."""
        try:
            st = os.statvfs(self.directory)
        except OSError:
            return  # no figure: the write itself will tell
        free = st.f_bavail * st.f_frsize
        if free - n < _RESERVE_BYTES:
            raise SpoolFull(
                f"spool {self.directory}: the disk is full (a batch of {n} bytes, {free} bytes free, {_RESERVE_BYTES} "
                "kept for replay); messages stay unacknowledged at the broker"
            )

    # -- replay ------------------------------------------------------------------------------------------------------
    def read(self, max_records: int) -> list[SpoolRecord]:
        """Up to ``max_records`` records from the cursor on, in append order (the cursor does not move)."""
        self.open()
        out: list[SpoolRecord] = []
        for seg, off in self._walk():
            buf = (self.directory / _name(seg)).read_bytes()
            pos = off
            while len(out) < max_records and (rec := _decode(buf, pos)) is not None:
                topic, payload, received_at, pos = rec
                out.append(SpoolRecord(topic, payload, received_at, (seg, pos)))
            if len(out) >= max_records:
                break
            if pos < len(buf):
                self._quarantine_segment(seg, pos)
        return out

    def _walk(self) -> Iterator[tuple[int, int]]:
        seg0, off0 = self._cursor
        for seg in sorted(self._sizes):
            if seg < seg0:
                continue
            off = off0 if seg == seg0 else 0
            if off < self._sizes[seg]:
                yield seg, off

    def _quarantine_segment(self, seg: int, pos: int) -> None:
        path = self.directory / _name(seg)
        log.error("spool %s: corrupt record at offset %d; segment kept as .corrupt for an operator", path, pos)
        path.rename(path.with_suffix(".corrupt"))
        self._sizes.pop(seg, None)

    def commit(self, position: tuple[int, int]) -> None:
        """Mark everything before ``position`` as replayed (after its database commit); drops finished segments."""
        self._cursor = position
        tmp = self.directory / "cursor.tmp"
        try:
            with tmp.open("w") as f:
                f.write(f"{position[0]} {position[1]}\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.directory / "cursor")
            _fsync_dir(self.directory)
            seg, off = position
            for s in [s for s in self._sizes if s < seg or (s == seg and off >= self._sizes[s])]:
                self._drop(s)
        except OSError as exc:
            raise StorageError(f"spool {self.directory}: cannot record the replay cursor: {exc}") from exc

    def _drop(self, seg: int) -> None:
        (self.directory / _name(seg)).unlink(missing_ok=True)
        self._sizes.pop(seg, None)


def _name(seg: int) -> str:
    return f"seg-{seg:012d}.log"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
