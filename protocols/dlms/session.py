"""An asyncio DLMS/COSEM session with one meter: the thin I/O shell over the sans-I/O codecs.

``async with DlmsSession(uri, password=...) as meter:`` opens the link (:func:`protocols.transport.open_link`), brings
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
from types import TracebackType
from typing import Any, Self

from amiflow.errors import AmiflowError, ConnectError, FrameError, ProtocolError, ReadTimeout, TransportError
from amiflow.types import Obis, parse_obis
from amiflow.uri import MeterUri
from protocols.transport import Link, open_link

from . import axdr
from .association import ActionOutcome, AssociationState, ClientAssociation, Continue, GetResult, SetOutcome, Stale
from .ciphering import Ciphering
from .cosem import Deviation
from .hdlc import NEED_DATA, Connected, Data, Disconnected, HdlcAddress, HdlcConnection, Role
from .wrapper import WrapperFrame, WrapperFramer
from .xdlms import AccessSelection, ActionResult, AttributeDescriptor, DataAccessResult, result_name

__all__ = ["DlmsSession"]

log = logging.getLogger(__name__)


class DlmsSession:
    """One association with one meter and the generic services GET, SET and ACTION (see the module docstring)."""

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

    # -- lifecycle -------------------------------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
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


def _dar(err: int | None) -> DataAccessResult:
    try:
        return DataAccessResult(err or 0)
    except ValueError:
        return DataAccessResult.OTHER_REASON
