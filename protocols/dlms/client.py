"""An asyncio DLMS/COSEM client for one meter: the thin I/O shell over the sans-I/O codecs.

``async with DlmsClient(uri, password=...) as meter:`` opens the link (:func:`protocols.transport.open_link`), brings
up HDLC (SNRM/UA) when the URI says so, associates (AARQ/AARE), and on exit releases (RLRQ), disconnects (DISC)
and closes the link, even after an error. URI parameters: ``client`` (SAP; 16 public, default 1 when a password is
given), ``server`` (logical device, 1), ``physical`` (HDLC lower address), ``deviation`` (``blue-book`` or ``iso``:
the make's date-time deviation sign), ``meter`` (the id put into reading batches; default the URI).

Over HDLC a lost or corrupted answer is recovered by repeating the last I-frame (same N(S)) after ``timeout_s``,
up to ``retries`` times; the meter answers again. Over the TCP wrapper a timeout leaves the stream out of step,
so the client refuses further requests (reopen it). Every error is one line naming the meter URI:
:class:`~amiflow.errors.ConnectError` (link down, association refused with the reason),
:class:`~amiflow.errors.ReadTimeout`, :class:`~amiflow.errors.ProtocolError` (exception-response, refused
access, malformed frames).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any

import numpy as np

from amiflow.errors import AmiflowError, ConnectError, FrameError, ProtocolError, ReadTimeout, TransportError
from amiflow.types import Obis, ReadingBatch, Source, normalize_unit, parse_obis
from amiflow.uri import MeterUri
from protocols.transport import Link, open_link

from . import axdr
from .association import ActionOutcome, AssociationState, ClientAssociation, Continue, GetResult, SetOutcome, Stale
from .ciphering import Ciphering
from .cosem import (
    CLOCK_OBIS,
    CaptureObject,
    ControlState,
    DateTime,
    Deviation,
    ScalerUnit,
    parse_capture_objects,
    range_descriptor,
)
from .hdlc import NEED_DATA, Connected, Data, Disconnected, HdlcAddress, HdlcConnection, Role
from .profile import decode_profile_fast
from .wrapper import WrapperFrame, WrapperFramer
from .xdlms import AccessSelection, ActionResult, AttributeDescriptor, DataAccessResult, result_name

__all__ = ["DISCONNECT_OBIS", "EVENT_LOG_OBIS", "DlmsClient", "MeterEvent"]

log = logging.getLogger(__name__)

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


class DlmsClient:
    """One association with one meter (see the module docstring)."""

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
        if uri.protocol != "dlms":
            raise ConnectError(f"{uri}: not a DLMS URI")
        self.uri = uri
        self.timeout_s = timeout_s
        self.retries = retries
        self.client_sap = uri.int_param("client", 1 if password is not None or security is not None else 16)
        self.server_sap = uri.int_param("server", 1)
        physical = uri.params.get("physical")
        self.meter = uri.params.get("meter") or uri.text
        self.deviation = Deviation(uri.params.get("deviation", Deviation.BLUE_BOOK.value))
        self._link = link
        self._assoc = ClientAssociation(
            password=password,
            ciphering=security,
            counter_key=f"{self.meter}:{self.client_sap}",
            challenge=os.urandom(16) if security is not None else None,
        )
        self._hdlc: HdlcConnection | None = None
        if uri.hdlc:
            server = HdlcAddress.server(self.server_sap, int(physical, 0) if physical else None)
            self._hdlc = HdlcConnection(Role.CLIENT, client=HdlcAddress(self.client_sap), server=server)
        self._framer = WrapperFramer()
        self._opened = False
        self._broken: str | None = None
        self._profiles: dict[Obis, tuple[tuple[CaptureObject, ...], int]] = {}
        self._scalers: dict[Obis, ScalerUnit] = {}

    # -- lifecycle -------------------------------------------------------------------------------------------------
    async def __aenter__(self) -> DlmsClient:
        link = self._link or open_link(self.uri, timeout_s=self.timeout_s)
        self._link = link
        await link.__aenter__()
        self._opened = True
        try:
            if self._hdlc is not None:
                await self._hdlc_connect()
            answer = await self._exchange_raw(self._assoc.aarq())
            try:
                self._assoc.on_aare(answer)
                if self._assoc.state is AssociationState.AWAITING_HLS:
                    self._assoc.on_hls_answer(await self._exchange_raw(self._assoc.hls_reply()))
            except ConnectError as exc:
                raise ConnectError(f"{self.uri}: {exc}") from None
            except FrameError as exc:
                raise ProtocolError(f"{self.uri}: bad AARE: {exc}") from exc
        except BaseException:
            await self._close_link()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._broken is None and self._assoc.state.value == "associated":
                try:
                    self._assoc.on_rlre(await self._exchange_raw(self._assoc.release(), timeout_s=1.0))
                except AmiflowError as err:
                    log.debug("release of %s failed: %s", self.uri, err)
            if self._hdlc is not None and self._broken is None:
                await self._hdlc_disconnect()
        finally:
            await self._close_link()

    async def _close_link(self) -> None:
        if self._opened and self._link is not None:
            self._opened = False
            await self._link.__aexit__(None, None, None)

    async def _hdlc_connect(self) -> None:
        assert self._hdlc is not None and self._link is not None
        snrm = self._hdlc.connect()
        for attempt in range(self.retries + 1):
            await self._link.write(snrm)
            try:
                event = await self._hdlc_event(self.timeout_s)
            except ReadTimeout:
                if attempt == self.retries:
                    raise ConnectError(f"{self.uri}: no UA answer to SNRM") from None
                continue
            if isinstance(event, Connected):
                return
            raise ConnectError(f"{self.uri}: the meter refused the HDLC connection ({event})")

    async def _hdlc_disconnect(self) -> None:
        assert self._hdlc is not None and self._link is not None
        try:
            await self._link.write(self._hdlc.disconnect())
            await self._hdlc_event(min(self.timeout_s, 1.0))
        except AmiflowError as err:
            log.debug("DISC of %s: %s", self.uri, err)

    # -- exchanges -------------------------------------------------------------------------------------------------
    async def _hdlc_event(self, timeout_s: float) -> Connected | Data | Disconnected:
        assert self._hdlc is not None and self._link is not None
        while True:
            try:
                event = self._hdlc.next_event()
            except FrameError as exc:
                log.debug("%s: dropped a bad HDLC frame: %s", self.uri, exc)
                continue
            except ProtocolError as exc:
                raise ProtocolError(f"{self.uri}: {exc}") from exc
            finally:
                pending = self._hdlc.data_to_send()
                if pending:
                    await self._link.write(pending)
            if event is not NEED_DATA:
                assert isinstance(event, Connected | Data | Disconnected)
                return event
            self._hdlc.receive_data(await self._link.read(4096, timeout_s=timeout_s))

    async def _exchange_raw(self, apdu: bytes, *, timeout_s: float | None = None) -> bytes:
        """Send one APDU, return the next APDU from the meter."""
        if self._broken is not None:
            raise TransportError(f"{self.uri}: the connection is out of step after {self._broken}; reopen it")
        assert self._link is not None
        timeout = self.timeout_s if timeout_s is None else timeout_s
        if self._hdlc is None:
            await self._link.write(WrapperFrame(self.client_sap, self.server_sap, apdu).to_bytes())
            try:
                return await self._wrapper_apdu(timeout)
            except ReadTimeout:
                self._broken = "a timeout"
                if self._framer.buffered:
                    n = self._framer.buffered
                    raise ReadTimeout(f"{self.uri}: incomplete answer ({n} bytes of a frame, then silence)") from None
                raise
        frame = self._hdlc.send(apdu)
        await self._link.write(frame)
        for attempt in range(self.retries + 1):
            try:
                event = await self._hdlc_event(timeout)
            except ReadTimeout:
                if attempt == self.retries:
                    self._broken = "a timeout"
                    raise
                log.debug("%s: no answer, repeating the I-frame (attempt %d)", self.uri, attempt + 1)
                await self._link.write(self._hdlc.retransmit())
                continue
            if isinstance(event, Data):
                return event.apdu
            self._broken = f"an HDLC {event}"
            raise ConnectError(f"{self.uri}: the meter dropped the HDLC link ({event})")
        raise AssertionError("unreachable")

    async def _wrapper_apdu(self, timeout_s: float) -> bytes:
        assert self._link is not None
        while True:
            try:
                frame = self._framer.next_event()
            except FrameError as exc:
                self._broken = "a bad wrapper frame"
                raise FrameError(f"{self.uri}: {exc}") from exc
            if isinstance(frame, WrapperFrame):
                return frame.apdu
            self._framer.receive_data(await self._link.read(4096, timeout_s=timeout_s))

    async def _request(self, apdu: bytes) -> GetResult | SetOutcome | ActionOutcome:
        request = apdu
        while True:
            answer = await self._exchange_raw(request)
            while True:
                try:
                    outcome = self._assoc.on_response(answer)
                except FrameError as exc:
                    raise FrameError(f"{self.uri}: {exc}") from exc
                except ProtocolError as exc:
                    raise ProtocolError(f"{self.uri}: {exc}") from exc
                if not isinstance(outcome, Stale):
                    break
                log.debug("%s: ignoring a late response", self.uri)
                answer = await self._read_more()
            if isinstance(outcome, Continue):
                request = outcome.request
                continue
            return outcome

    async def _read_more(self) -> bytes:
        if self._hdlc is None:
            return await self._wrapper_apdu(self.timeout_s)
        event = await self._hdlc_event(self.timeout_s)
        if not isinstance(event, Data):
            raise ConnectError(f"{self.uri}: the meter dropped the HDLC link ({event})")
        return event.apdu

    # -- generic services ------------------------------------------------------------------------------------------
    async def get_raw(
        self, class_id: int, obis: str | Obis, attribute: int, access: AccessSelection | None = None
    ) -> bytes:
        """GET one attribute; its A-XDR bytes. ProtocolError naming the data-access-result when refused."""
        ln = parse_obis(obis) if isinstance(obis, str) else obis
        outcome = await self._request(self._assoc.get(AttributeDescriptor(class_id, ln, attribute), access))
        assert isinstance(outcome, GetResult)
        raw, err = outcome.items[0]
        if raw is None:
            raise ProtocolError(
                f"{self.uri}: GET {ln} attribute {attribute}: {result_name(DataAccessResult, err or 0)}"
            )
        return raw

    async def get(self, class_id: int, obis: str | Obis, attribute: int, access: AccessSelection | None = None) -> Any:
        """GET one attribute, decoded (see :mod:`protocols.dlms.axdr` for the Python types)."""
        raw = await self.get_raw(class_id, obis, attribute, access)
        try:
            return axdr.decode(raw)
        except FrameError as exc:
            raise FrameError(f"{self.uri}: {exc}") from exc

    async def get_many(self, items: list[tuple[int, str | Obis, int]]) -> list[Any | DataAccessResult]:
        """GET-Request-With-List: decoded values, or the DataAccessResult for refused items."""
        descs = [(AttributeDescriptor(c, parse_obis(o) if isinstance(o, str) else o, a), None) for c, o, a in items]
        outcome = await self._request(self._assoc.get_with_list(descs))
        assert isinstance(outcome, GetResult)
        if len(outcome.items) != len(items):
            raise ProtocolError(f"{self.uri}: {len(outcome.items)} results for {len(items)} attributes")
        out: list[Any] = []
        for raw, err in outcome.items:
            out.append(axdr.decode(raw) if raw is not None else _dar(err))
        return out

    async def set(self, class_id: int, obis: str | Obis, attribute: int, value: Any) -> None:
        ln = parse_obis(obis) if isinstance(obis, str) else obis
        outcome = await self._request(self._assoc.set(AttributeDescriptor(class_id, ln, attribute), axdr.encode(value)))
        assert isinstance(outcome, SetOutcome)
        if outcome.result != DataAccessResult.SUCCESS:
            raise ProtocolError(
                f"{self.uri}: SET {ln} attribute {attribute}: {result_name(DataAccessResult, outcome.result)}"
            )

    async def action(self, class_id: int, obis: str | Obis, method: int, params: Any = None) -> Any:
        ln = parse_obis(obis) if isinstance(obis, str) else obis
        data = None if params is None else axdr.encode(params)
        outcome = await self._request(self._assoc.action(AttributeDescriptor(class_id, ln, method), data))
        assert isinstance(outcome, ActionOutcome)
        if outcome.result != ActionResult.SUCCESS:
            raise ProtocolError(f"{self.uri}: ACTION {ln} method {method}: {result_name(ActionResult, outcome.result)}")
        return None if outcome.data is None else axdr.decode(outcome.data)

    # -- meter operations ------------------------------------------------------------------------------------------
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


def _dar(err: int | None) -> DataAccessResult:
    try:
        return DataAccessResult(err or 0)
    except ValueError:
        return DataAccessResult.OTHER_REASON
