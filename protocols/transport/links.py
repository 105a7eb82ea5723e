"""Byte links to meters over asyncio: TCP, and serial through pyserial-asyncio-fast (a tty or a pty).

Serial line settings come from the URI (``?baud=9600&bytesize=8&parity=N&stopbits=1``) with per-protocol defaults
(IEC 62056-21: 300 7E1, DSMR P1: 115200 8N1, Modbus RTU and DLMS HDLC: 9600 8N1). A pty does not pace the baud rate
or support modem lines; nothing here relies on them. Every OS or pyserial error leaves as a ConnectError, ReadTimeout
or TransportError naming the URI.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import termios
from types import TracebackType

from amiflow.errors import ConfigError, ConnectError, ReadTimeout, TransportError
from amiflow.uri import MeterUri

__all__ = ["Link", "SerialLink", "SerialSettings", "TcpLink", "open_link", "serial_settings"]

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


def open_link(uri: MeterUri, *, timeout_s: float) -> Link:
    """The link for a meter URI (not yet open: use ``async with``). ConfigError for MQTT or incomplete URIs."""
    if timeout_s <= 0:
        raise ConfigError(f"meter URI {uri.text!r}: timeout must be positive, got {timeout_s}")
    if uri.link == "tcp" and uri.host is not None and uri.port is not None:
        return TcpLink(uri.host, uri.port, timeout_s=timeout_s, peer=uri.text)
    if uri.link == "serial" and uri.path is not None:
        return SerialLink(uri.path, serial_settings(uri), timeout_s=timeout_s, peer=uri.text)
    raise ConfigError(f"meter URI {uri.text!r}: no byte link for a {uri.link} URI")


def _is_pty(path: str) -> bool:
    """True for a pseudo-terminal slave (Unix98 ptys have majors 136..143)."""
    try:
        return 136 <= os.major(os.stat(path).st_rdev) <= 143
    except OSError:
        return False


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
