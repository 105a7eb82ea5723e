"""Meter connection URIs (CONTRACT.md).

``modbus+tcp://HOST:PORT?unit=1&map=sdm630``, ``modbus+rtu:///dev/ttyX?baud=9600&unit=1``,
``dlms+tcp://HOST:4059?client=16&server=1``, ``dlms+hdlc:///dev/ttyX``, ``dlms+hdlc+tcp://HOST:PORT``,
``iec62056-21:///dev/ttyX``, ``mqtt://METER_ID``; added (compatible): ``iec62056-21+tcp://HOST:PORT``,
``p1:///dev/ttyX`` and ``p1+tcp://HOST:PORT`` for DSMR P1 ports behind a serial-to-TCP bridge;
``sml+serial:///dev/ttyX?baud=9600`` and ``sml+tcp://HOST:PORT`` for SML push meters (an optical IR head on a
serial port, or behind a TCP serial server such as ser2net); ``mbus+serial:///dev/ttyX?baud=2400&address=5`` and
``mbus+tcp://HOST:PORT?secondary=12345678`` for M-Bus meters (a level converter or a TCP gateway; see
:func:`protocols.mbus.client.mbus_target`); ``wmbus://IDENT?manufacturer=MFR`` for a wireless M-Bus meter that
``amiflow ingest wmbus`` hears (its 8-digit ident number and, optionally, its 3-letter manufacturer code).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from amiflow.errors import ConfigError

__all__ = ["PROTOCOLS", "SCHEMES", "MeterUri", "MqttTarget", "parse_meter_uri", "parse_mqtt_url"]

# scheme -> (protocol, link) where link is "tcp" or "serial" or "mqtt" or "radio" (heard, never connected to)
SCHEMES: dict[str, tuple[str, str]] = {
    "modbus+tcp": ("modbus", "tcp"),
    "modbus+rtu": ("modbus", "serial"),
    "modbus+rtu+tcp": ("modbus", "tcp"),
    "dlms+tcp": ("dlms", "tcp"),
    "dlms+hdlc": ("dlms", "serial"),
    "dlms+hdlc+tcp": ("dlms", "tcp"),
    "iec62056-21": ("iec62056-21", "serial"),
    "iec62056-21+tcp": ("iec62056-21", "tcp"),
    "p1": ("p1", "serial"),
    "p1+tcp": ("p1", "tcp"),
    "sml+serial": ("sml", "serial"),
    "sml+tcp": ("sml", "tcp"),
    "mqtt": ("mqtt", "mqtt"),
    "mbus+serial": ("mbus", "serial"),
    "mbus+tcp": ("mbus", "tcp"),
    "wmbus": ("wmbus", "radio"),
}
PROTOCOLS = ("dlms", "iec62056-21", "mbus", "modbus", "mqtt", "p1", "sml", "wmbus")
_DEFAULT_PORTS = {"modbus": 502, "dlms": 4059}


@dataclass(frozen=True, slots=True)
class MeterUri:
    """A parsed meter URI. ``host``/``port`` for TCP links, ``path`` for serial links, ``meter`` for MQTT."""

    text: str
    scheme: str
    protocol: str
    link: str
    host: str | None = None
    port: int | None = None
    path: str | None = None
    params: dict[str, str] = field(default_factory=dict)

    @property
    def hdlc(self) -> bool:
        """True when DLMS runs over HDLC framing (serial or HDLC-over-TCP) rather than the TCP wrapper."""
        return "hdlc" in self.scheme or self.scheme == "modbus+rtu+tcp"

    def int_param(self, name: str, default: int) -> int:
        raw = self.params.get(name)
        if raw is None:
            return default
        try:
            return int(raw, 0)
        except ValueError:
            raise ConfigError(f"meter URI {self.text!r}: parameter {name}={raw!r} is not an integer") from None

    def __str__(self) -> str:
        return self.text


def parse_meter_uri(text: str) -> MeterUri:
    """Parse and check a meter URI; raises ConfigError naming the URI and what is wrong."""
    try:
        parts = urlsplit(text.strip())
    except ValueError as exc:  # an unbalanced [ ] of an IPv6 host
        raise ConfigError(f"meter URI {text!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        known = ", ".join(sorted(SCHEMES))
        raise ConfigError(f"meter URI {text!r}: unknown scheme {scheme or '(none)'!r}; expected one of {known}")
    protocol, link = SCHEMES[scheme]
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    if link == "mqtt":
        meter = parts.netloc or parts.path.lstrip("/")
        if parts.netloc and parts.path not in ("", "/"):
            meter = ""
        if not meter or "/" in meter or "+" in meter or "#" in meter:
            raise ConfigError(f"meter URI {text!r}: expected mqtt://METER_ID (no '/', '+' or '#')")
        return MeterUri(text, scheme, protocol, link, host=meter, params=params)
    if link == "radio":
        return _radio(text, scheme, protocol, parts.netloc, parts.path, params)
    if link == "serial":
        if parts.netloc or not parts.path.startswith("/"):
            raise ConfigError(f"meter URI {text!r}: expected {scheme}:///dev/ttyX (an absolute device path)")
        return MeterUri(text, scheme, protocol, link, path=parts.path, params=params)
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"meter URI {text!r}: the port is not a number in 0..65535") from None
    if not parts.hostname:
        raise ConfigError(f"meter URI {text!r}: expected {scheme}://HOST:PORT")
    port = port if port is not None else _DEFAULT_PORTS.get(protocol)
    if port is None:
        raise ConfigError(f"meter URI {text!r}: a port is required")
    return MeterUri(text, scheme, protocol, link, host=parts.hostname, port=port, params=params)


def _radio(text: str, scheme: str, protocol: str, netloc: str, path: str, params: dict[str, str]) -> MeterUri:
    """``wmbus://IDENT[?manufacturer=MFR]``: who to listen for, not where (host = the ident number)."""
    ident = netloc.upper()
    if len(ident) != 8 or not set(ident) <= set("0123456789") or path not in ("", "/"):
        raise ConfigError(f"meter URI {text!r}: expected wmbus://IDENT with the meter's 8-digit ident number")
    maker = params.get("manufacturer")
    if maker is not None:
        if len(maker) != 3 or not set(maker.upper()) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ"):
            raise ConfigError(f"meter URI {text!r}: manufacturer={maker!r} must be a 3-letter code such as KAM")
        params = {**params, "manufacturer": maker.upper()}
    return MeterUri(text, scheme, protocol, "radio", host=ident, params=params)


@dataclass(frozen=True, slots=True)
class MqttTarget:
    """A broker to connect to, from ``mqtt://`` or ``mqtts://user:pass@host:port`` (AMIFLOW_MQTT_URL)."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None


def parse_mqtt_url(url: str) -> MqttTarget:
    """Parse an MQTT URL; raises ConfigError naming the problem."""
    expected = f"AMIFLOW_MQTT_URL: expected mqtt://host:port or mqtts://user:pass@host:port, got {url!r}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a port that is no number in 0..65535, an unbalanced [ ] of an IPv6 host
        raise ConfigError(expected) from None
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ConfigError(expected)
    tls = parts.scheme == "mqtts"
    return MqttTarget(
        parts.hostname,
        port or (8883 if tls else 1883),
        tls,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
    )
