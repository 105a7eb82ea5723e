"""Thin asyncio links to meters: TCP and serial (a tty or a pty), plus the guards every poller needs.

A :class:`Link` carries bytes and nothing else; the codecs above it are sans-I/O. Constructing a link opens nothing;
``async with link:`` connects and ``__aexit__`` always closes, even when the body raised. Third-party errors
(``OSError``, ``serial.SerialException``, ``asyncio.TimeoutError``) are translated here into the amiflow tree:
:class:`~amiflow.errors.ConnectError`, :class:`~amiflow.errors.ReadTimeout` and
:class:`~amiflow.errors.TransportError`, each with a one-line message naming the URI.

- :mod:`.links`: :class:`Link`, :class:`TcpLink`, :class:`SerialLink`, :func:`open_link` and the serial line
  settings of a URI (``?baud=9600&bytesize=8&parity=N&stopbits=1``, with per-protocol defaults);
- :mod:`.memory`: :class:`MemoryLink` and :func:`null_modem`, the in-memory fake for unit tests;
- :mod:`.bus`: :class:`BusLock`, one request at a time per RS-485 bus or TCP gateway;
- :mod:`.breaker`: :class:`CircuitBreaker`, per meter;
- :mod:`.backoff`: :func:`retry` with jittered exponential backoff.
"""

from __future__ import annotations

from .backoff import backoff_delays, retry
from .breaker import BreakerState, CircuitBreaker, CircuitOpen
from .bus import BusLock, bus_key
from .links import Link, SerialLink, SerialSettings, TcpLink, open_link, serial_settings
from .memory import MemoryLink, null_modem

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
    "backoff_delays",
    "bus_key",
    "null_modem",
    "open_link",
    "retry",
    "serial_settings",
]
