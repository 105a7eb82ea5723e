"""One shape for reading any polled meter, whatever its protocol: the poller and commissioning use only this.

A session is an async context manager (connecting and releasing the link) with: ``identify()``, ``read_clock()``,
``set_clock()``, ``read_registers(at)`` (registers and instantaneous values as a ReadingBatch), and, where the meter
keeps one (DLMS), ``read_profile(after, until)`` (the load profile's intervals). Adapters translate each protocol
client; their errors are already amiflow's (TransportError, ProtocolError, ConnectError).

Commissioning reads more (:class:`SheetSession`): ``read_quantities()`` (every value with its unit and the meter's
scaling, :class:`ingest.meter_quantities.Quantity`) and ``read_relay()`` (the relay read back).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

import numpy as np

from amiflow.errors import ConfigError
from amiflow.types import ReadingBatch, Source, normalize_unit
from amiflow.uri import MeterUri
from ingest.meter_quantities import (
    Quantity,
    RelayState,
    dlms_quantities,
    dlms_relay,
    iec_quantities,
    modbus_quantities,
    modbus_relay,
)

__all__ = ["MeterSession", "SessionFactory", "SheetSession", "open_session"]

# What a DLMS poll reads besides the profile: energy registers and instantaneous values.
DLMS_REGISTERS = ("1-0:1.8.0", "1-0:2.8.0", "1-0:1.7.0", "1-0:32.7.0", "1-0:31.7.0")
DLMS_PROFILE = "1-0:99.1.0"


class MeterSession(Protocol):
    has_profile: bool

    async def __aenter__(self) -> MeterSession: ...

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def identify(self) -> dict[str, Any]: ...

    async def read_clock(self) -> datetime | None: ...

    async def set_clock(self, when: datetime) -> None: ...

    async def read_registers(self, at: datetime) -> ReadingBatch: ...

    async def read_profile(self, after: datetime, until: datetime) -> ReadingBatch: ...


@runtime_checkable
class SheetSession(MeterSession, Protocol):
    """A session that can fill a commissioning sheet: values with units and scaling, and the relay."""

    async def read_quantities(self) -> list[Quantity]: ...

    async def read_relay(self) -> RelayState: ...


SessionFactory = Callable[[str, MeterUri, float], MeterSession]


class _DlmsSession:
    has_profile = True

    def __init__(self, meter: str, uri: MeterUri, timeout_s: float) -> None:
        from protocols.dlms import DlmsClient

        password = uri.params.get("password")
        self._meter = meter
        self._client = DlmsClient(uri, password=password.encode() if password else None, timeout_s=timeout_s)

    async def __aenter__(self) -> _DlmsSession:
        await self._client.__aenter__()
        return self

    async def __aexit__(self, et: Any, e: Any, tb: Any) -> None:
        await self._client.__aexit__(et, e, tb)

    async def identify(self) -> dict[str, Any]:
        return dict(await self._client.identify())

    async def read_clock(self) -> datetime | None:
        clock: datetime = await self._client.read_clock()
        return clock

    async def set_clock(self, when: datetime) -> None:
        await self._client.set_clock(when)

    async def read_registers(self, at: datetime) -> ReadingBatch:
        obis, values, units = [], [], []
        for code in DLMS_REGISTERS:
            value, unit = await self._client.read_register(code)
            base, factor = normalize_unit(str(unit or ""))
            obis.append(code)
            values.append(float(value) * factor)
            units.append(base)
        return ReadingBatch.from_columns(
            self._meter,
            np.array(obis, dtype=object),
            [int(at.timestamp())] * len(obis),
            values,
            unit=np.array(units, dtype=object),
            source=Source.DLMS,
        )

    async def read_quantities(self) -> list[Quantity]:
        return await dlms_quantities(self._client)

    async def read_relay(self) -> RelayState:
        return await dlms_relay(self._client)

    async def read_profile(self, after: datetime, until: datetime) -> ReadingBatch:
        batch: ReadingBatch = await self._client.read_profile(DLMS_PROFILE, after, until)
        if len(batch) and (batch.meter != self._meter).any():
            batch = ReadingBatch(
                np.full(len(batch), self._meter, dtype=object),
                batch.obis,
                batch.ts,
                batch.value,
                batch.quality,
                batch.source,
                batch.unit,
            )
        return batch


class _ModbusSession:
    has_profile = False

    def __init__(self, meter: str, uri: MeterUri, timeout_s: float) -> None:
        from protocols.modbus import ModbusMeterClient

        self._meter = meter
        self._client = ModbusMeterClient(uri, map_name=uri.params.get("map"), timeout_s=timeout_s)

    async def __aenter__(self) -> _ModbusSession:
        await self._client.__aenter__()
        return self

    async def __aexit__(self, et: Any, e: Any, tb: Any) -> None:
        await self._client.__aexit__(et, e, tb)

    async def identify(self) -> dict[str, Any]:
        return dict(await self._client.identify())

    async def read_clock(self) -> datetime | None:
        return None  # energy meters on Modbus keep no clock that a head-end may rely on

    async def set_clock(self, when: datetime) -> None:
        raise ConfigError(f"meter {self._meter}: Modbus meters have no clock to set")

    async def read_registers(self, at: datetime) -> ReadingBatch:
        batch: ReadingBatch = await self._client.read_readings(int(at.timestamp()))
        return _named(batch, self._meter)

    async def read_quantities(self) -> list[Quantity]:
        return await modbus_quantities(self._client)

    async def read_relay(self) -> RelayState:
        return await modbus_relay(self._client)

    async def read_profile(self, after: datetime, until: datetime) -> ReadingBatch:
        return ReadingBatch()


class _IecSession:
    has_profile = False

    def __init__(self, meter: str, uri: MeterUri, timeout_s: float) -> None:
        self._meter = meter
        self._uri = uri
        self._timeout_s = timeout_s
        self._readout: Any = None

    async def __aenter__(self) -> _IecSession:
        return self

    async def __aexit__(self, et: Any, e: Any, tb: Any) -> None:
        return None

    async def _read(self) -> Any:
        if self._readout is None:
            from protocols.iec62056_21 import read_iec62056_21

            self._readout = await read_iec62056_21(self._uri, timeout_s=self._timeout_s)
        return self._readout

    async def identify(self) -> dict[str, Any]:
        readout = await self._read()
        ident = getattr(readout, "identification", None)
        text = str(ident or "")[4:]  # after XXXZ: manufacturer and baud character
        model = (text[2:] if text.startswith("\\") else text).strip()
        return {
            "identification": str(ident),
            **({"serial": readout.serial} if getattr(readout, "serial", None) else {}),
            **({"manufacturer": readout.manufacturer} if getattr(readout, "manufacturer", "") else {}),
            **({"model": model} if model else {}),
        }

    async def read_clock(self) -> datetime | None:
        readout = await self._read()
        clock = getattr(readout, "clock", None)
        return clock if isinstance(clock, datetime) else None

    async def set_clock(self, when: datetime) -> None:
        raise ConfigError(f"meter {self._meter}: setting the clock over IEC 62056-21 needs programming mode")

    async def read_registers(self, at: datetime) -> ReadingBatch:
        readout = await self._read()
        batch: ReadingBatch = readout.readings
        if len(batch):
            batch = ReadingBatch(
                batch.meter,
                batch.obis,
                np.full(len(batch), int(at.timestamp()), dtype=np.int64),
                batch.value,
                batch.quality,
                batch.source,
                batch.unit,
            )
        return _named(batch, self._meter)

    async def read_quantities(self) -> list[Quantity]:
        return iec_quantities(await self._read())

    async def read_relay(self) -> RelayState:
        return RelayState(False, detail="an IEC 62056-21 readout carries no relay state")

    async def read_profile(self, after: datetime, until: datetime) -> ReadingBatch:
        return ReadingBatch()


def _named(batch: ReadingBatch, meter: str) -> ReadingBatch:
    if not len(batch):
        return batch
    return ReadingBatch(
        np.full(len(batch), meter, dtype=object),
        batch.obis,
        batch.ts,
        batch.value,
        batch.quality,
        batch.source,
        batch.unit,
    )


def open_session(meter: str, uri: MeterUri, timeout_s: float) -> MeterSession:
    """A session for the meter's protocol (constructing it opens nothing)."""
    if uri.protocol == "dlms":
        return _DlmsSession(meter, uri, timeout_s)
    if uri.protocol == "modbus":
        return _ModbusSession(meter, uri, timeout_s)
    if uri.protocol == "iec62056-21":
        return _IecSession(meter, uri, timeout_s)
    if uri.protocol == "mbus":
        from ingest.mbus_session import MbusSession

        return MbusSession(meter, uri, timeout_s)
    if uri.protocol == "sml":
        from ingest.sml_session import SmlSession

        return SmlSession(meter, uri, timeout_s)  # commissioning only: push meters are read by ingest/push_reader
    if uri.protocol == "mqtt":
        raise ConfigError(
            f"meter {meter}: MQTT meters push their readings and cannot be commissioned or polled over a link"
        )
    raise ConfigError(f"meter {meter}: {uri.protocol} meters are not polled (they push their readings)")
