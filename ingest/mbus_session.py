"""The polled-meter session of an M-Bus meter (EN 13757-2/-3): heat, water, gas and electricity meters on a wired
bus behind a serial line (2400 8E1 by default) or a TCP gateway.

One readout (SND_NKE, REQ_UD2 with FCB toggling, every telegram of a multi-telegram answer) serves the whole session:
identity from the fixed header (8-digit ident number, manufacturer, version, medium), the current values as
readings in base units (Wh, m3, W, m3/h, degC, K, ...; see :mod:`protocols.mbus.readings` for the channels), and
the sheet's quantities. M-Bus meters keep no clock a head-end may set, and carry no supply relay; the meter's own
time (a type F record, local time without a zone) is read back only when the URI names the zone (``?tz=Europe/Berlin``).
The poller holds the bus lock around a session, so one master talks on a bus at a time.

Encrypted meters (OMS security mode 5 in the long header) decode with the meter's AES key from the registry
(``amiflow.meter_keys``): :func:`ingest.mbus_keys.registry_sessions` is the poller's session factory that looks
each M-Bus meter's key up (cached a minute, read on a connection of its own in a worker thread). A meter whose
key is missing or wrong fails its poll with one line naming the meter (a ConfigError: retrying does not help); no
key ever appears in a message, a log line or a ``repr``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from amiflow.db.meter_keys import MeterKey
from amiflow.errors import ConfigError
from amiflow.types import ReadingBatch
from amiflow.uri import MeterUri
from ingest.meter_quantities import Quantity, RelayState

__all__ = ["MbusSession"]

#: issues of a readout that mean "the values could not be decrypted": the poll fails with the issue's text
_KEY_ISSUES: Final = ("encrypted", "bad_key", "unsupported_security")


class MbusSession:
    """A :class:`~ingest.meter_sessions.SheetSession` over :class:`protocols.mbus.MbusMaster`."""

    has_profile = False

    def __init__(
        self,
        meter: str,
        uri: MeterUri,
        timeout_s: float,
        *,
        keys: Callable[[str], MeterKey | None] | None = None,
        key: MeterKey | None = None,
    ) -> None:
        """``key``: the meter's AES key; or ``keys``: a blocking lookup by meter name, run in a worker thread
        when the session opens (:class:`ingest.mbus_keys.RegistryKeys`)."""
        from protocols.mbus.client import mbus_target, open_master

        self._meter = meter
        self._uri = uri
        self._target = mbus_target(uri)  # ConfigError for a bad address now, before any I/O
        self._zone = _zone(uri)
        self._master = open_master(uri, timeout_s=timeout_s)
        self._keys = keys
        self._key = key
        self._readout: Any = None

    async def __aenter__(self) -> MbusSession:
        from protocols.mbus.security import KeyRing

        key = self._key
        if key is None and self._keys is not None:
            key = await asyncio.to_thread(self._keys, self._meter)
        if key is not None:
            self._master.keys = KeyRing(default=key.raw)  # whatever ident the meter at this address reports
        await self._master.__aenter__()
        return self

    async def __aexit__(self, et: Any, e: Any, tb: Any) -> None:
        await self._master.__aexit__(et, e, tb)

    async def _read(self) -> Any:
        if self._readout is None:
            readout = await self._master.read(self._target)
            locked = [i for i in readout.issues if i.code in _KEY_ISSUES]
            if locked and not readout.records:
                hint = "; store its key: amiflow meters set-key" if locked[0].code != "unsupported_security" else ""
                raise ConfigError(f"meter {self._meter}: {locked[0].detail}{hint}")
            self._readout = readout
        return self._readout

    async def identify(self) -> dict[str, Any]:
        header = (await self._read()).header
        if header is None:
            return {}
        return {
            "serial": header.ident,
            "manufacturer": header.manufacturer,
            "model": f"{header.medium_name} meter",
            "firmware": f"version {header.version}",
            "medium": header.medium_name,
        }

    async def read_clock(self) -> datetime | None:
        if self._zone is None:
            return None
        from protocols.mbus.readings import mbus_readings

        readout = await self._read()
        clock = mbus_readings(readout.header, readout.records, received_ts=0, meter=self._meter).clock
        if not clock:
            return None
        try:
            return datetime.fromisoformat(clock).replace(tzinfo=self._zone)
        except ValueError:
            return None

    async def set_clock(self, when: datetime) -> None:
        raise ConfigError(f"meter {self._meter}: amiflow does not set M-Bus meter clocks (no standard write)")

    async def read_registers(self, at: datetime) -> ReadingBatch:
        batch: ReadingBatch = (await self._read()).batch(int(at.timestamp()), meter=self._meter)
        return batch

    async def read_quantities(self) -> list[Quantity]:
        batch = await self.read_registers(datetime.now().astimezone())
        return [
            Quantity(str(o), float(v), str(u), float(v), str(u), "M-Bus VIF (value in its base unit)")
            for o, v, u in zip(batch.obis, batch.value, batch.unit, strict=True)
        ]

    async def read_relay(self) -> RelayState:
        return RelayState(False, detail="M-Bus meters carry no supply relay")

    async def read_profile(self, after: datetime, until: datetime) -> ReadingBatch:
        return ReadingBatch()


def _zone(uri: MeterUri) -> ZoneInfo | None:
    name = uri.params.get("tz")
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"meter URI {uri.text!r}: tz={name!r} is not a time zone name") from None
