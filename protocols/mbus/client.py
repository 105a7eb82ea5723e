"""The asyncio M-Bus master over a byte link: ``async with MbusMaster(link) as bus: await bus.read(5)``.

A thin shell around :class:`~protocols.mbus.master.MasterState`: write a request, read until the state machine
has its answer, the timeout passes or a fault arrives; retry a lost or garbled answer with the same FCB
(``retries`` times), then raise :class:`~amiflow.errors.ReadTimeout` (nothing answered) or
:class:`~amiflow.errors.ProtocolError` (only garbage: a collision or line noise). One request at a time per bus:
an ``asyncio.Lock`` (pass a shared one, e.g. :class:`~protocols.transport.BusLock`'s, for meters on one gateway).

- :meth:`MbusMaster.read` (a primary address 0-250 or an 8-digit secondary address): SND_NKE (secondary: select),
  then REQ_UD2 with FCB toggling until a telegram without "more records follow" (DIF 1F), at most
  ``max_telegrams``; -> :class:`MbusReadout` (telegrams, records, a ReadingBatch).
- :meth:`MbusMaster.scan_primary`: SND_NKE to each address, those that answer E5.
- :meth:`MbusMaster.scan_secondary`: the wildcard search: select ``d FFFFFFF`` for each digit, descend on a
  collision, read the ident of each single answer; -> the ident numbers found.

``mbus+serial:///dev/ttyUSB0?baud=2400&address=5`` (2400 8E1 unless the URI says otherwise) and
``mbus+tcp://HOST:PORT?secondary=12345678`` open with :func:`open_master`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Final

from amiflow.errors import ConfigError, ProtocolError, ReadTimeout
from amiflow.types import Issue, ReadingBatch
from amiflow.uri import MeterUri
from protocols.transport import Link, open_link

from .header import DeviceHeader
from .link import ADDRESS_SELECTED, Ack, FrameFault, LongFrame
from .master import MasterState, Probe
from .readings import mbus_readings
from .records import DataRecord
from .security import KeyRing
from .telegram import Telegram, parse_application

__all__ = ["MbusMaster", "MbusReadout", "mbus_target", "open_master"]

MAX_PRIMARY: Final = 250


@dataclass(frozen=True, slots=True)
class MbusReadout:
    """One meter's readout: every telegram of a multi-telegram answer, joined."""

    address: int | str
    telegrams: tuple[Telegram, ...]
    issues: tuple[Issue, ...] = field(default=())

    @property
    def header(self) -> DeviceHeader | None:
        return next((t.header for t in self.telegrams if t.header is not None), None)

    @property
    def records(self) -> tuple[DataRecord, ...]:
        return tuple(r for t in self.telegrams for r in t.records)

    def batch(self, received_ts: int, meter: str | None = None) -> ReadingBatch:
        """The current values as readings (see :mod:`protocols.mbus.readings`)."""
        return mbus_readings(self.header, self.records, received_ts=received_ts, meter=meter).batch


def mbus_target(uri: MeterUri) -> int | str:
    """The meter a URI names: ``?address=N`` (primary, default 0) or ``?secondary=12345678``."""
    secondary = uri.params.get("secondary")
    if secondary is not None:
        if len(secondary) != 8 or not secondary.isdigit():
            raise ConfigError(f"meter URI {uri.text!r}: secondary={secondary!r} must be an 8-digit ident number")
        return secondary
    address = uri.int_param("address", 0)
    if not 0 <= address <= MAX_PRIMARY:
        raise ConfigError(f"meter URI {uri.text!r}: address={address} is not a primary address 0..250")
    return address


def open_master(uri: MeterUri, *, timeout_s: float = 1.0, **kwargs: object) -> MbusMaster:
    """A master for the bus of a meter URI (not yet open: ``async with``); serial defaults to 2400 8E1."""
    if uri.link == "serial":
        uri = replace(uri, params={"baud": "2400", "parity": "E", **uri.params})
    return MbusMaster(open_link(uri, timeout_s=timeout_s), timeout_s=timeout_s, **kwargs)  # type: ignore[arg-type]


class MbusMaster:
    """An M-Bus master on one bus; constructing it opens nothing, ``async with`` opens the link."""

    def __init__(
        self,
        link: Link,
        *,
        timeout_s: float = 1.0,
        retries: int = 2,
        max_telegrams: int = 16,
        keys: KeyRing | None = None,
        lock: asyncio.Lock | None = None,
    ) -> None:
        if timeout_s <= 0 or retries < 0 or max_telegrams < 1:
            raise ConfigError("M-Bus master: timeout > 0, retries >= 0 and max_telegrams >= 1 required")
        self.link = link
        self.timeout_s = timeout_s
        self.retries = retries
        self.max_telegrams = max_telegrams
        self.keys = keys
        self.state = MasterState()
        self._lock = lock or asyncio.Lock()

    async def __aenter__(self) -> MbusMaster:
        await self.link.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.link.__aexit__(exc_type, exc, tb)

    # -- one exchange ----------------------------------------------------------------------------------------------

    async def _wait(self) -> Ack | LongFrame | FrameFault | None:
        """The answer to the request just sent: a frame, else the last fault (garbage), else None (silence)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        fault: FrameFault | None = None
        skipped = self.state.decoder.skipped
        while True:
            event = self.state.next_event()
            if isinstance(event, FrameFault):
                fault = event  # noise or a collision; a good frame may still follow
                continue
            if event is not None:
                return event
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                chunk = await self.link.read(4096, timeout_s=left)
            except ReadTimeout:
                break
            self.state.receive_data(chunk)
            # a long frame at 2400 Bd takes more than a second: while bytes keep coming, keep waiting
            deadline = max(deadline, loop.time() + min(self.timeout_s, 0.2))
        if fault is None and (self.state.decoder.buffered or self.state.decoder.skipped > skipped):
            fault = FrameFault("garbage", "only unframed bytes arrived", b"")
        self.state.timeout()
        return fault

    async def _exchange(self, build: Callable[[], bytes], what: str, retries: int | None = None) -> Ack | LongFrame:
        """Send ``build()`` and wait, retrying on silence or a fault (same FCB); the last failure raises."""
        fault: FrameFault | None = None
        tries = (self.retries if retries is None else retries) + 1
        for _ in range(tries):
            await self.link.write(build())
            event = await self._wait()
            if isinstance(event, Ack | LongFrame):
                return event
            fault = event or fault
        if fault is not None:
            raise ProtocolError(f"{self.link.peer}: {what}: garbled answer ({fault.detail})")
        raise ReadTimeout(f"{self.link.peer}: {what}: no answer within {self.timeout_s:g} s ({tries} tries)")

    # -- requests -------------------------------------------------------------------------------------------------

    async def snd_nke(self, address: int, *, retries: int | None = None) -> None:
        """Reset the slave's link layer (it answers E5)."""
        async with self._lock:
            await self._exchange(lambda: self.state.snd_nke(address), f"SND_NKE to {address}", retries)

    async def select(
        self,
        ident: str,
        manufacturer: str | None = None,
        version: int | None = None,
        medium: int | None = None,
        *,
        retries: int | None = None,
    ) -> None:
        """Select one slave by secondary address (ReadTimeout when none answers)."""
        async with self._lock:
            build = lambda: self.state.select(ident, manufacturer, version, medium)  # noqa: E731
            await self._exchange(build, f"select {ident}", retries)

    async def req_ud2(self, address: int, *, retries: int | None = None) -> Telegram:
        """One REQ_UD2 -> the decoded telegram."""
        async with self._lock:
            frame = await self._exchange(lambda: self.state.req_ud2(address), f"REQ_UD2 to {address}", retries)
        assert isinstance(frame, LongFrame)
        return parse_application(frame.ci, frame.data, keys=self.keys)

    async def read(self, address: int | str) -> MbusReadout:
        """The whole readout of one meter (primary address or 8-digit secondary address)."""
        if isinstance(address, str):
            await self.select(address)
            primary = ADDRESS_SELECTED
        else:
            if not 0 <= address <= MAX_PRIMARY and address != 0xFE:
                raise ConfigError(f"M-Bus primary address {address}: expected 0..250")
            await self.snd_nke(address)
            primary = address
        telegrams: list[Telegram] = []
        issues: list[Issue] = []
        while True:
            telegram = await self.req_ud2(primary)
            telegrams.append(telegram)
            issues.extend(telegram.issues)
            if not telegram.more_follows:
                break
            if len(telegrams) >= self.max_telegrams:
                issues.append(Issue("too_many_telegrams", f"still more records after {self.max_telegrams} telegrams"))
                break
        return MbusReadout(address, tuple(telegrams), tuple(issues))

    async def scan_primary(self, addresses: range = range(0, MAX_PRIMARY + 1), *, retries: int = 0) -> list[int]:
        """The primary addresses that answer SND_NKE (a collision counts as present: two meters, one address).
        ``retries`` per address: 0 by default, as a scan of 251 addresses mostly waits on silence."""
        found = []
        for address in addresses:
            try:
                await self.snd_nke(address, retries=retries)
            except ReadTimeout:
                continue
            except ProtocolError:
                pass
            found.append(address)
        return found

    async def probe(self, mask: str) -> tuple[Probe, str | None]:
        """Select ``mask`` and ask the selected slave: (NOTHING | SINGLE | COLLISION, ident when single)."""
        try:
            await self.select(mask, retries=0)  # a search is mostly silence: one try per mask (as libmbus)
        except ReadTimeout:
            return Probe.NOTHING, None
        except ProtocolError:
            return Probe.COLLISION, None
        try:
            telegram = await self.req_ud2(ADDRESS_SELECTED, retries=1)
        except ProtocolError:
            return Probe.COLLISION, None
        except ReadTimeout:  # E5 but no telegram: a slave that only acknowledges; count it as one
            return Probe.SINGLE, None
        ident = telegram.header.ident if telegram.header is not None else None
        return Probe.SINGLE, ident

    async def scan_secondary(self, mask: str = "FFFFFFFF") -> list[str]:
        """The wildcard search below ``mask`` (``F`` digits are searched): every ident number that answers."""
        found: list[str] = []
        await self._walk(mask.upper(), found)
        return sorted(set(found))

    async def _walk(self, mask: str, found: list[str]) -> None:
        pos = mask.find("F")
        if pos < 0:
            kind, ident = await self.probe(mask)
            if kind is not Probe.NOTHING:
                found.append(ident or mask)  # a full collision: two meters with one ident (other maker/medium)
            return
        for digit in "0123456789":
            candidate = mask[:pos] + digit + mask[pos + 1 :]
            kind, ident = await self.probe(candidate)
            if kind is Probe.SINGLE and ident is not None:
                found.append(ident)
            elif kind is Probe.COLLISION:
                await self._walk(candidate, found)
