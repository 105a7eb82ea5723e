"""The commissioning's link to the meter: every read timed, a read that timed out or came back broken tried again on a
fresh session, and the counts kept for the sheet's communication-quality line.

A Modbus unit that never answered (no answer, or exception 4/10/11 from a gateway or a device that has no such unit)
while the connection itself opened is almost always a wrong unit id: the error then says so
(:func:`no_answer_hint`) rather than only "exception 4 (server device failure)".
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from amiflow.errors import AmiflowError, ConfigError, FrameError, ProtocolError, ReadTimeout
from amiflow.uri import MeterUri
from ingest.commissioning.report import LinkQuality
from ingest.meter_sessions import MeterSession, SessionFactory

__all__ = ["MeasuredLink", "no_answer_hint"]

T = TypeVar("T")
_NO_UNIT_CODES = ("exception 4 ", "exception 10 ", "exception 11 ")


def no_answer_hint(uri: MeterUri, exc: AmiflowError) -> str | None:
    """The hint for a Modbus unit that never answered, or None when ``exc`` is something else."""
    if uri.protocol != "modbus":
        return None
    if not isinstance(exc, ReadTimeout) and not (
        isinstance(exc, ProtocolError) and any(code in str(exc) for code in _NO_UNIT_CODES)
    ):
        return None
    unit = uri.int_param("unit", 1)
    return f"no answer from unit {unit}: check the unit id (the meter's address), baud and wiring ({exc})"


class MeasuredLink:
    """``async with MeasuredLink(factory, meter, uri, timeout_s, retries) as link: await link.call("read", fn)``."""

    def __init__(
        self,
        factory: SessionFactory,
        meter: str,
        uri: MeterUri,
        timeout_s: float,
        retries: int,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._factory = factory
        self._meter = meter
        self._uri = uri
        self._timeout_s = timeout_s
        self._retries = retries
        self._monotonic = monotonic
        self._session: MeterSession | None = None
        self._answered = False
        self._latencies: list[float] = []
        self._attempts = 0
        self._retried = 0
        self._failures = 0
        self._reopened = 0

    @property
    def session(self) -> MeterSession:
        if self._session is None:
            raise ConfigError(f"{self._uri}: the link is not open (use async with)")
        return self._session

    async def _open(self) -> None:
        for attempt in range(self._retries + 1):
            session = self._factory(self._meter, self._uri, self._timeout_s)
            try:
                self._session = await session.__aenter__()
                return
            except (ReadTimeout, FrameError):  # a lost or broken answer to the association: try again
                if attempt == self._retries:
                    raise
                self._retried += 1

    async def _close(self, exc: BaseException | None = None) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.__aexit__(type(exc) if exc else None, exc, exc.__traceback__ if exc else None)

    async def __aenter__(self) -> MeasuredLink:
        await self._open()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None, tb: Any) -> None:
        await self._close(e)

    async def call(self, what: str, fn: Callable[[MeterSession], Awaitable[T]]) -> T:
        """``fn(session)``, timed; after a timeout, a broken frame or a refused request, again on a new session (up
        to ``retries`` times). The last error is raised, with the unit-id hint where it applies."""
        for attempt in range(self._retries + 1):
            self._attempts += 1
            if attempt:
                self._retried += 1
            start = self._monotonic()
            try:
                result = await fn(self.session)
            except ConfigError:
                raise
            except AmiflowError as exc:
                self._failures += 1
                if attempt == self._retries:
                    hint = None if self._answered else no_answer_hint(self._uri, exc)
                    if hint is not None:
                        raise type(exc)(hint) from exc
                    raise
                await self._reopen(exc)
                continue
            self._latencies.append(self._monotonic() - start)
            self._answered = True
            return result
        raise AssertionError("unreachable")

    async def _reopen(self, exc: AmiflowError) -> None:
        with contextlib.suppress(AmiflowError):  # the old session is gone either way
            await self._close(exc)
        self._reopened += 1
        await self._open()

    def quality(self) -> LinkQuality:
        lat = self._latencies
        return LinkQuality(
            attempts=self._attempts,
            retries=self._retried,
            failures=self._failures,
            reopened=self._reopened,
            median_latency_s=round(statistics.median(lat), 4) if lat else None,
            max_latency_s=round(max(lat), 4) if lat else None,
        )
