"""Thin asyncio links to meters: TCP and serial (a tty or a pty), plus the guards every poller needs.

A :class:`Link` carries bytes and nothing else; the codecs above it are sans-I/O. Constructing a link opens nothing;
``async with link:`` connects and ``__aexit__`` always closes, even when the body raised. Third-party errors
(``OSError``, ``serial.SerialException``, ``asyncio.TimeoutError``) are translated here into the amiflow tree:
:class:`~amiflow.errors.ConnectError`, :class:`~amiflow.errors.ReadTimeout` and
:class:`~amiflow.errors.TransportError`, each with a one-line message naming the URI.

Guards (usable with any link or client):

- :class:`BusLock`: one request at a time per RS-485 bus (keyed by device path) or TCP gateway (``host:port``),
  because RTU is half duplex and gateways in front of buses behave the same.
- :class:`CircuitBreaker`: per meter, closed -> open after ``failure_threshold`` consecutive failures, half-open
  after ``cooldown_s`` (one trial call), closed again on success.
- :func:`retry`: jittered exponential backoff ("full jitter") for transport failures.

Serial line settings come from the URI (``?baud=9600&bytesize=8&parity=N&stopbits=1``) with per-protocol defaults
(IEC 62056-21: 300 7E1, DSMR P1: 115200 8N1, Modbus RTU and DLMS HDLC: 9600 8N1). A pty does not pace the baud rate
or support modem lines; nothing here relies on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import random
import termios
import time
import weakref
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar

from amiflow.errors import ConfigError, ConnectError, ReadTimeout, TransportError
from amiflow.uri import MeterUri

__all__ = [
    "BreakerState",
    "BusLock",
    "CircuitBreaker",
    "CircuitOpen",
    "Link",
    "MemoryLink",
    "SerialLink",
    "SerialSettings",
    "TcpLink",
    "bus_key",
    "null_modem",
    "open_link",
    "retry",
    "serial_settings",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

# protocol -> (baudrate, bytesize, parity, stopbits)
SerialSettings = tuple[int, int, str, float]
_SERIAL_DEFAULTS: dict[str, SerialSettings] = {
    "iec62056-21": (300, 7, "E", 1),
    "p1": (115200, 8, "N", 1),
    "modbus": (9600, 8, "N", 1),
    "dlms": (9600, 8, "N", 1),
}


def serial_settings(uri: MeterUri) -> SerialSettings:
    """(baudrate, bytesize, parity, stopbits) from the URI's parameters and the protocol's defaults."""
    baud, bits, parity, stop = _SERIAL_DEFAULTS.get(uri.protocol, (9600, 8, "N", 1))
    baud = uri.int_param("baud", baud)
    bits = uri.int_param("bytesize", bits)
    parity = uri.params.get("parity", parity).upper()
    try:
        stop = float(uri.params.get("stopbits", stop))
    except ValueError:
        raise ConfigError(f"meter URI {uri.text!r}: stopbits must be 1, 1.5 or 2") from None
    if parity not in ("N", "E", "O", "M", "S") or bits not in (5, 6, 7, 8) or stop not in (1, 1.5, 2) or baud <= 0:
        raise ConfigError(f"meter URI {uri.text!r}: bad serial settings {baud} {bits}{parity}{stop:g}")
    return baud, bits, parity, stop


class Link:
    """A byte link to one meter. Subclasses implement ``_open``, ``_close``, ``write`` and ``_read``."""

    def __init__(self, peer: str, *, timeout_s: float) -> None:
        self.peer = peer
        self.timeout_s = timeout_s
        self._open_now = False

    async def __aenter__(self) -> Link:
        await self._open()
        self._open_now = True
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._open_now = False
        await self._close()

    @property
    def is_open(self) -> bool:
        return self._open_now

    async def write(self, data: bytes) -> None:
        """Send ``data`` (flushed before returning)."""
        raise NotImplementedError

    async def read(self, max_bytes: int = 4096, timeout_s: float | None = None) -> bytes:
        """At least one and at most ``max_bytes`` bytes; ReadTimeout when none arrive in time, TransportError at EOF."""
        if not self._open_now:
            raise TransportError(f"{self.peer}: link is not open")
        timeout = self.timeout_s if timeout_s is None else timeout_s
        try:
            data = await asyncio.wait_for(self._read(max_bytes), timeout)
        except TimeoutError:
            raise ReadTimeout(f"{self.peer}: no answer within {timeout:g} s") from None
        except (OSError, ConnectionError) as exc:
            raise TransportError(f"{self.peer}: read failed: {exc}") from exc
        if not data:
            raise TransportError(f"{self.peer}: the peer closed the connection")
        return data

    async def set_serial(self, baudrate: int, bytesize: int = 8, parity: str = "N", stopbits: float = 1) -> None:
        """Change the line settings (a no-op on TCP)."""

    async def _open(self) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError

    async def _read(self, max_bytes: int) -> bytes:
        raise NotImplementedError


class _StreamLink(Link):
    """A link over an asyncio (reader, writer) pair."""

    _reader: asyncio.StreamReader | None = None
    _writer: asyncio.StreamWriter | None = None

    async def write(self, data: bytes) -> None:
        if self._writer is None or not self._open_now:
            raise TransportError(f"{self.peer}: link is not open")
        try:
            self._writer.write(data)
            await asyncio.wait_for(self._writer.drain(), self.timeout_s)
        except TimeoutError:
            raise ReadTimeout(f"{self.peer}: write not accepted within {self.timeout_s:g} s") from None
        except (OSError, ConnectionError) as exc:
            raise TransportError(f"{self.peer}: write failed: {exc}") from exc

    async def _read(self, max_bytes: int) -> bytes:
        assert self._reader is not None
        return await self._reader.read(max_bytes)

    async def _close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is None:
            return
        writer.close()
        with contextlib.suppress(TimeoutError, OSError, ConnectionError):  # a dead link: nothing left to release
            await asyncio.wait_for(writer.wait_closed(), 1.0)


class TcpLink(_StreamLink):
    """TCP to ``host:port`` (a meter, a serial-to-TCP bridge or a Modbus gateway)."""

    def __init__(self, host: str, port: int, *, timeout_s: float, peer: str | None = None) -> None:
        super().__init__(peer or f"tcp://{host}:{port}", timeout_s=timeout_s)
        self.host = host
        self.port = port

    async def _open(self) -> None:
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.timeout_s
            )
        except TimeoutError:
            raise ConnectError(f"{self.peer}: no connection within {self.timeout_s:g} s") from None
        except OSError as exc:
            raise ConnectError(f"{self.peer}: cannot connect: {exc.strerror or exc}") from exc


class SerialLink(_StreamLink):
    """A serial device or pty path through pyserial-asyncio-fast."""

    def __init__(self, path: str, settings: SerialSettings, *, timeout_s: float, peer: str | None = None) -> None:
        super().__init__(peer or f"serial://{path}", timeout_s=timeout_s)
        self.path = path
        self.settings = settings
        self._pty: bool | None = None

    async def _open(self) -> None:
        import serial
        import serial_asyncio_fast

        baud, bits, parity, stop = self._line(self.settings)
        try:
            self._reader, self._writer = await serial_asyncio_fast.open_serial_connection(
                url=self.path, baudrate=baud, bytesize=bits, parity=parity, stopbits=stop
            )
        except (serial.SerialException, OSError, ValueError, termios.error) as exc:
            raise ConnectError(f"{self.peer}: cannot open: {_one_line(exc)}") from exc

    @property
    def is_pty(self) -> bool:
        """True when the path is a pseudo-terminal (no baud pacing: no need to wait for bytes to leave)."""
        if self._pty is None:
            self._pty = _is_pty(self.path)
        return self._pty

    def _line(self, settings: SerialSettings) -> SerialSettings:
        """The settings to apply: a Linux pty refuses 7-bit and parity framing (EINVAL), and a pty carries bytes
        unchanged anyway, so on a pty only the baud rate is kept and the framing becomes 8N1."""
        if self._pty is None:
            self._pty = _is_pty(self.path)
        if self._pty:
            return settings[0], 8, "N", 1
        return settings

    async def set_serial(self, baudrate: int, bytesize: int = 8, parity: str = "N", stopbits: float = 1) -> None:
        import serial

        self.settings = (baudrate, bytesize, parity, stopbits)
        if self._writer is None:
            return
        port = self._writer.transport.get_extra_info("serial")
        if port is None:
            return
        baudrate, bytesize, parity, stopbits = self._line(self.settings)
        try:
            port.baudrate, port.bytesize, port.parity, port.stopbits = baudrate, bytesize, parity, stopbits
        except (serial.SerialException, OSError, ValueError, termios.error) as exc:
            raise TransportError(f"{self.peer}: cannot set {baudrate} {bytesize}{parity}{stopbits:g}: {exc}") from exc


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


def open_link(uri: MeterUri, *, timeout_s: float) -> Link:
    """The link for a meter URI (not yet open: use ``async with``). ConfigError for MQTT or incomplete URIs."""
    if timeout_s <= 0:
        raise ConfigError(f"meter URI {uri.text!r}: timeout must be positive, got {timeout_s}")
    if uri.link == "tcp" and uri.host is not None and uri.port is not None:
        return TcpLink(uri.host, uri.port, timeout_s=timeout_s, peer=uri.text)
    if uri.link == "serial" and uri.path is not None:
        return SerialLink(uri.path, serial_settings(uri), timeout_s=timeout_s, peer=uri.text)
    raise ConfigError(f"meter URI {uri.text!r}: no byte link for a {uri.link} URI")


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


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpen(TransportError):
    """The meter's circuit breaker is open: the call was not attempted."""


class CircuitBreaker:
    """Per-meter circuit breaker; ``clock`` is injectable (monotonic seconds) so tests need no sleeping.

    ``await breaker.call(fn)`` runs ``fn()`` when allowed, counts TransportError (and ``failure_types``) as failures,
    and raises :class:`CircuitOpen` without calling while open.
    """

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 3,
        cooldown_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        failure_types: tuple[type[BaseException], ...] = (TransportError,),
    ) -> None:
        if failure_threshold < 1 or cooldown_s < 0:
            raise ConfigError(f"circuit breaker {name}: threshold >= 1 and cooldown >= 0 required")
        self.name = name
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self.failure_types = failure_types
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self.cooldown_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    @property
    def failures(self) -> int:
        return self._failures

    def allow(self) -> bool:
        """True when a call may go ahead now (closed, or the one trial call of half-open)."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._trial_running:
            self._trial_running = True
            return True
        return False

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_running = False

    def record_failure(self) -> None:
        self._failures += 1
        self._trial_running = False
        if self._opened_at is not None or self._failures >= self.failure_threshold:
            if self._opened_at is None:
                log.warning("circuit breaker open for %s after %d failures", self.name, self._failures)
            self._opened_at = self._clock()

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        if not self.allow():
            raise CircuitOpen(f"{self.name}: circuit open after {self._failures} failures; retry later")
        try:
            result = await fn()
        except self.failure_types:
            self.record_failure()
            raise
        except BaseException:
            self._trial_running = False
            raise
        self.record_success()
        return result


def backoff_delays(attempts: int, base_s: float, max_s: float, rng: random.Random | None = None) -> list[float]:
    """The sleeps between ``attempts`` tries: uniform in [0, min(max_s, base_s * 2**i)] ("full jitter")."""
    r = rng or random.Random()
    return [r.uniform(0.0, min(max_s, base_s * 2**i)) for i in range(max(0, attempts - 1))]


async def retry(
    fn: Callable[[], Awaitable[T]],
    attempts: int = 3,
    base_s: float = 0.5,
    max_s: float = 30.0,
    *,
    retry_on: tuple[type[BaseException], ...] = (TransportError,),
    rng: random.Random | None = None,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> T:
    """Call ``fn()`` up to ``attempts`` times, sleeping a jittered exponential backoff between tries.

    Only ``retry_on`` errors are retried (never CircuitOpen: the breaker already said no); the last error is raised.
    """
    if attempts < 1:
        raise ConfigError(f"retry: attempts must be >= 1, got {attempts}")
    delays = backoff_delays(attempts, base_s, max_s, rng)
    for i in range(attempts):
        try:
            return await fn()
        except CircuitOpen:
            raise
        except retry_on as exc:
            if i == attempts - 1:
                raise
            log.debug("attempt %d/%d failed (%s); retrying in %.2f s", i + 1, attempts, exc, delays[i])
            await sleep(delays[i])
    raise AssertionError("unreachable")  # pragma: no cover


def _is_pty(path: str) -> bool:
    """True for a pseudo-terminal slave (Unix98 ptys have majors 136..143)."""
    try:
        return 136 <= os.major(os.stat(path).st_rdev) <= 143
    except OSError:
        return False


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
