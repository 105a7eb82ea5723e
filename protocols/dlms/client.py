"""The DLMS/COSEM meter operations amiflow needs, over a :class:`~protocols.dlms.session.DlmsSession`.

``async with DlmsClient(uri, password=...) as meter:`` then identity (serial, model, firmware, logical device name),
registers scaled by their scaler_unit (class 3), the clock (class 8), profile and event log ranges (class 7, range
selective access, decoded by :mod:`.profile`) and disconnect control (class 70). The session's URI parameters and
error rules apply; scaler_units and profile layouts are read once per client and cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from amiflow.errors import FrameError, ProtocolError
from amiflow.types import Obis, ReadingBatch, Source, normalize_unit, parse_obis
from amiflow.uri import MeterUri
from protocols.transport import Link

from . import axdr
from .ciphering import Ciphering
from .cosem import CLOCK_OBIS, ControlState, DateTime, ScalerUnit
from .profile import decode_profile_fast
from .profile_generic import CaptureObject, parse_capture_objects, range_descriptor
from .session import DlmsSession
from .xdlms import DataAccessResult, result_name

__all__ = ["DISCONNECT_OBIS", "EVENT_LOG_OBIS", "DlmsClient", "MeterEvent"]

DISCONNECT_OBIS = parse_obis("0-0:96.3.10")
EVENT_LOG_OBIS = parse_obis("0-0:99.98.0")
_IDENTITY = (
    ("serial", 1, "0-0:96.1.0"),
    ("model", 1, "0-0:96.1.1"),
    ("firmware", 1, "1-0:0.2.0"),
    ("logical_device_name", 1, "0-0:42.0.0"),
)


@dataclass(frozen=True, slots=True)
class MeterEvent:
    """One entry of the meter's event log: when, the event code, and the log it came from."""

    at: datetime
    code: int
    log: str


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").strip("\x00 ") or None
    if isinstance(value, str):
        return value.strip() or None
    return None if value is None else str(value)


class DlmsClient(DlmsSession):
    """A :class:`DlmsSession` with the meter operations (see the module docstring)."""

    def __init__(
        self,
        uri: MeterUri,
        *,
        password: bytes | None = None,
        timeout_s: float = 5.0,
        retries: int = 2,
        link: Link | None = None,
        security: Ciphering | None = None,
    ) -> None:
        super().__init__(uri, password=password, timeout_s=timeout_s, retries=retries, link=link, security=security)
        self._profiles: dict[Obis, tuple[tuple[CaptureObject, ...], int]] = {}
        self._scalers: dict[Obis, ScalerUnit] = {}

    async def identify(self) -> dict[str, str | None]:
        """Serial (0-0:96.1.0), model (0-0:96.1.1), firmware (1-0:0.2.0), logical device name (0-0:42.0.0) and the
        manufacturer (the FLAG id: the first three letters of the logical device name); None where absent."""
        values = await self.get_many([(c, o, 2) for _, c, o in _IDENTITY])
        out = {
            name: (None if isinstance(v, DataAccessResult) else _text(v))
            for (name, _, _), v in zip(_IDENTITY, values, strict=True)
        }
        ldn = out.get("logical_device_name")
        out["manufacturer"] = ldn[:3] if ldn and len(ldn) >= 3 else None
        return out

    async def scaler_unit(self, obis: str | Obis, class_id: int = 3) -> ScalerUnit:
        ln = parse_obis(obis) if isinstance(obis, str) else obis
        if ln not in self._scalers:
            try:
                self._scalers[ln] = ScalerUnit.from_value(await self.get(class_id, ln, 3))
            except FrameError as exc:
                raise ProtocolError(f"{self.uri}: {ln} scaler_unit: {exc}") from exc
        return self._scalers[ln]

    async def read_register(self, obis: str) -> tuple[float, str]:
        """A register's value scaled by its scaler_unit, and the unit text (``Wh``, ``W``, ``V``, ...)."""
        ln = parse_obis(obis)
        value, su = await self.get_many([(3, ln, 2), (3, ln, 3)])
        if isinstance(value, DataAccessResult):
            raise ProtocolError(f"{self.uri}: GET {ln}: {result_name(DataAccessResult, value)}")
        if not isinstance(value, int | float):
            raise ProtocolError(f"{self.uri}: {ln} value is not a number: {value!r}")
        scaler = ScalerUnit() if isinstance(su, DataAccessResult) else ScalerUnit.from_value(su)
        self._scalers[ln] = scaler
        return _scaled(float(value), scaler.scaler), scaler.unit_text

    async def read_clock(self) -> datetime:
        raw = await self.get(8, CLOCK_OBIS, 2)
        if not isinstance(raw, bytes | axdr.Raw):
            raise ProtocolError(f"{self.uri}: clock is not a date-time: {raw!r}")
        try:
            return DateTime.from_bytes(raw.data if isinstance(raw, axdr.Raw) else raw).to_datetime(self.deviation)
        except (FrameError, ValueError) as exc:
            raise ProtocolError(f"{self.uri}: bad clock value: {exc}") from exc

    async def set_clock(self, when: datetime) -> None:
        """Set the meter clock to ``when`` (aware); sent as UTC with deviation 0."""
        await self.set(8, CLOCK_OBIS, 2, DateTime.from_datetime(when, convention=self.deviation).to_bytes())

    async def _profile_layout(self, ln: Obis) -> tuple[tuple[CaptureObject, ...], int]:
        if ln not in self._profiles:
            objects, period = await self.get_many([(7, ln, 3), (7, ln, 4)])
            if isinstance(objects, DataAccessResult) or isinstance(period, DataAccessResult):
                raise ProtocolError(f"{self.uri}: profile {ln}: {result_name(DataAccessResult, int(objects))}")
            self._profiles[ln] = (parse_capture_objects(objects), int(period))
        return self._profiles[ln]

    async def read_profile(self, obis: str, start: datetime, end: datetime) -> ReadingBatch:
        """Profile rows with ``start < clock <= end`` (range selective access) as a columnar batch: one reading per
        non-clock numeric column and row, scaled to the column's base unit, ``ts`` the row's capture time."""
        ln = parse_obis(obis)
        objects, period = await self._profile_layout(ln)
        clock_col = next((i for i, o in enumerate(objects) if o.is_clock), None)
        if clock_col is None:
            raise ProtocolError(f"{self.uri}: profile {ln} has no clock column")
        raw = await self.get_raw(7, ln, 2, range_descriptor(start, end, convention=self.deviation))
        try:
            cols = decode_profile_fast(raw, clock_col, period, self.deviation)
        except FrameError as exc:
            raise FrameError(f"{self.uri}: profile {ln}: {exc}") from exc
        if not len(cols.ts):  # no row in the range (the meter holds nothing there): no columns to read
            return ReadingBatch()
        keep = (cols.ts > int(start.timestamp())) & (cols.ts <= int(end.timestamp()))
        batches = []
        for c, obj in enumerate(objects):
            if c == clock_col or obj.class_id not in (1, 3, 4) or obj.attribute != 2:
                continue
            su = await self.scaler_unit(obj.obis, obj.class_id) if obj.class_id in (3, 4) else ScalerUnit()
            try:
                base, factor = normalize_unit(su.unit_text)
            except ValueError:  # a unit amiflow has no base for (°C, %, ...): kept as the meter says
                base, factor = su.unit_text, 1.0
            values = _scaled(cols.values[:, c], su.scaler) * factor
            mask = keep & ~np.isnan(values)
            batches.append(
                ReadingBatch.from_columns(
                    self.meter, str(obj.obis), cols.ts[mask], values[mask], unit=base, source=Source.DLMS
                )
            )
        return ReadingBatch.concat(batches)

    async def read_events(self, start: datetime, end: datetime, obis: str = str(EVENT_LOG_OBIS)) -> list[MeterEvent]:
        """Event log entries with ``start < time <= end``: (time, event code)."""
        ln = parse_obis(obis)
        objects, period = await self._profile_layout(ln)
        clock_col = next((i for i, o in enumerate(objects) if o.is_clock), 0)
        raw = await self.get_raw(7, ln, 2, range_descriptor(start, end, convention=self.deviation))
        cols = decode_profile_fast(raw, clock_col, period, self.deviation)
        code_col = next((i for i in range(len(objects)) if i != clock_col), None)
        out = []
        for i, ts in enumerate(cols.ts.tolist()):
            if code_col is None or not start.timestamp() < ts <= end.timestamp():
                continue
            out.append(MeterEvent(datetime.fromtimestamp(ts, start.tzinfo), int(cols.values[i, code_col]), str(ln)))
        return out

    async def disconnect(self) -> None:
        """remote_disconnect (class 70 method 1); ProtocolError when the meter refuses (access, control mode)."""
        await self.action(70, DISCONNECT_OBIS, 1, axdr.Integer(0))

    async def reconnect(self) -> None:
        """remote_reconnect (method 2): connects, or in control modes 2/4 arms the relay (ready_for_reconnection)."""
        await self.action(70, DISCONNECT_OBIS, 2, axdr.Integer(0))

    async def read_disconnect_state(self) -> tuple[bool, int, int]:
        """(output_state, control_state, control_mode) of 0-0:96.3.10."""
        out, state, mode = await self.get_many(
            [(70, DISCONNECT_OBIS, 2), (70, DISCONNECT_OBIS, 3), (70, DISCONNECT_OBIS, 4)]
        )
        for v in (out, state, mode):
            if isinstance(v, DataAccessResult):
                raise ProtocolError(f"{self.uri}: disconnect control: {result_name(DataAccessResult, v)}")
        return bool(out), ControlState(int(state)), int(mode)


def _scaled(value: Any, scaler: int) -> Any:
    """``value * 10**scaler``, dividing for negative scalers so 2286 at -1 is 228.6, not 228.60000000000002."""
    return value / 10.0**-scaler if scaler < 0 else value * 10.0**scaler
