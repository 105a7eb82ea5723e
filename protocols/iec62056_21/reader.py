"""The async IEC 62056-21 client: one mode C readout of one meter over a transport link.

Sign on at the URI's line settings, read the identification, select the offered baud rate (capped by ``max_baud``),
switch the line (after the ACK has left at the old rate), read the readout block and parse it (:mod:`.readout`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from amiflow.errors import ConfigError, FrameError, ProtocolError, TransportError
from amiflow.types import Issue, ReadingBatch
from amiflow.uri import MeterUri
from protocols.transport import Link, SerialLink, open_link

from .messages import Identification
from .readout import parse_readout
from .session import NEED_DATA, IecClient

__all__ = ["Readout", "read_iec62056_21"]


@dataclass(frozen=True, slots=True)
class Readout:
    """One meter readout: identification line (without ``/``), serial, meter clock (aware UTC), readings, raw block."""

    identification: str
    serial: str | None
    clock: datetime | None
    readings: ReadingBatch
    raw: bytes
    manufacturer: str = ""
    baudrate: int = 300
    issues: tuple[Issue, ...] = field(default_factory=tuple)


async def read_iec62056_21(uri: MeterUri, *, timeout_s: float) -> Readout:
    """Sign on, identify, switch baud and read out one meter (``iec62056-21:///dev/ttyX`` or ``...+tcp://H:P``).

    URI parameters: ``address`` (device address for a bus of meters), ``max_baud`` (cap on the switched rate),
    ``tz`` (the meter clock's zone, default UTC), ``meter`` (the name in the readings; default the serial),
    plus the serial line settings of :func:`protocols.transport.serial_settings` (default 300 7E1).
    ``timeout_s`` bounds each wait for the meter. Errors name the URI: ConnectError, ReadTimeout, TransportError
    (the meter hung up), FrameError (bad BCC, noise), ProtocolError (an unusable answer).
    """
    tz: ZoneInfo | None = None
    if uri.params.get("tz"):
        try:
            tz = ZoneInfo(uri.params["tz"])
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"meter URI {uri.text!r}: unknown time zone {uri.params['tz']!r}") from None
    client = IecClient(uri.params.get("address", ""), max_baudrate=uri.int_param("max_baud", 19200))
    link = open_link(uri, timeout_s=timeout_s)
    async with link:
        try:
            await link.write(client.send_sign_on())
            ident = await _await_event(link, client, Identification)
            await link.write(client.send_option_select())
            if isinstance(link, SerialLink) and client.baudrate != link.settings[0]:
                baud, bits, parity, stop = link.settings
                if not link.is_pty:
                    await asyncio.sleep(6 * 10 / baud + 0.05)  # the ACK must leave at the old rate before switching
                await link.set_serial(client.baudrate, bits, parity, stop)
            block = await _await_event(link, client, bytes)
        except FrameError as exc:
            raise FrameError(f"{uri.text}: {exc}") from None
        except TransportError as exc:
            if client.state == "readout" and client.pending:
                raise FrameError(f"{uri.text}: readout truncated after {client.pending} bytes ({exc})") from None
            if client.state == "identify" and client.discarded:
                detail = f"{client.discarded} bytes of noise and no identification"
                raise FrameError(f"{uri.text}: {detail} ({exc})") from None
            raise
    parsed = parse_readout(block, meter=uri.params.get("meter") or None, tz=tz)
    if any(issue.code == "no_meter_id" for issue in parsed.issues):
        parsed = parse_readout(block, meter=ident.text, tz=tz)  # no serial in the readout: name it by its ident
    return Readout(
        identification=ident.text,
        serial=parsed.serial,
        clock=parsed.clock,
        readings=parsed.readings,
        raw=block,
        manufacturer=ident.manufacturer,
        baudrate=client.baudrate,
        issues=parsed.issues,
    )


_E = TypeVar("_E", Identification, bytes)


async def _await_event(link: Link, client: IecClient, kind: type[_E]) -> _E:
    while True:
        event = client.next_event()
        if isinstance(event, kind):
            return event
        if event is not NEED_DATA:
            raise ProtocolError(f"{link.peer}: unexpected {type(event).__name__} from the meter")
        client.receive_data(await link.read())
