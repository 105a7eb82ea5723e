"""Where a simulator listens: ``tcp://HOST:PORT`` (loopback only; port 0 picks one), ``pty`` (a new pty pair), or,
where the protocol runs on serial lines, ``rtu:///dev/ttyX`` style paths of an existing device."""

from __future__ import annotations

from urllib.parse import urlsplit

from amiflow.errors import ConfigError

__all__ = ["parse_listen"]

_LOOPBACK = ("localhost", "::1")


def parse_listen(
    text: str, *, tcp_schemes: tuple[str, ...] = (), serial_schemes: tuple[str, ...] = ()
) -> tuple[str, str, int]:
    """-> ("tcp", host, port), ("pty", "", 0) or ("serial", path, 0); ConfigError naming the option otherwise."""
    if text in ("pty", "pty://"):
        return "pty", "", 0
    parts = urlsplit(text)
    if serial_schemes and parts.scheme in serial_schemes:
        if parts.netloc or not parts.path.startswith("/"):
            raise ConfigError(f"--listen {text!r}: expected {parts.scheme}:///dev/ttyX (an absolute device path)")
        return "serial", parts.path, 0
    if parts.scheme in ("tcp", *tcp_schemes) and parts.hostname:
        if parts.hostname not in _LOOPBACK and not parts.hostname.startswith("127."):
            raise ConfigError(f"--listen {text!r}: simulators listen on loopback addresses only")
        try:
            return "tcp", parts.hostname, parts.port or 0
        except ValueError:
            raise ConfigError(f"--listen {text!r}: the port is not a number") from None
    serial = f", or {serial_schemes[0]}:///dev/ttyX" if serial_schemes else ""
    raise ConfigError(f"--listen {text!r}: expected tcp://127.0.0.1:PORT (0 = pick one), pty{serial}")
