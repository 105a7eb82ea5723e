"""A per-meter circuit breaker: closed -> open after ``failure_threshold`` consecutive failures, half-open after
``cooldown_s`` (one trial call), closed again on success. The clock is injected, so tests need no sleeping."""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from amiflow.errors import ConfigError, TransportError

__all__ = ["BreakerState", "CircuitBreaker", "CircuitOpen"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpen(TransportError):
    """The meter's circuit breaker is open: the call was not attempted."""


class CircuitBreaker:
    """Per-meter circuit breaker; ``clock`` is injectable (monotonic seconds) so tests need no sleeping.

    ``await breaker.call(fn)`` runs ``fn()`` when allowed, counts TransportError (and ``failure_types``) as failures,
    and raises :class:`CircuitOpen` without calling while open.
    """

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 3,
        cooldown_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        failure_types: tuple[type[BaseException], ...] = (TransportError,),
    ) -> None:
        if failure_threshold < 1 or cooldown_s < 0:
            raise ConfigError(f"circuit breaker {name}: threshold >= 1 and cooldown >= 0 required")
        self.name = name
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self.failure_types = failure_types
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self.cooldown_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    @property
    def failures(self) -> int:
        return self._failures

    def allow(self) -> bool:
        """True when a call may go ahead now (closed, or the one trial call of half-open)."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._trial_running:
            self._trial_running = True
            return True
        return False

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_running = False

    def record_failure(self) -> None:
        self._failures += 1
        self._trial_running = False
        if self._opened_at is not None or self._failures >= self.failure_threshold:
            if self._opened_at is None:
                log.warning("circuit breaker open for %s after %d failures", self.name, self._failures)
            self._opened_at = self._clock()

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        if not self.allow():
            raise CircuitOpen(f"{self.name}: circuit open after {self._failures} failures; retry later")
        try:
            result = await fn()
        except self.failure_types:
            self.record_failure()
            raise
        except BaseException:
            self._trial_running = False
            raise
        self.record_success()
        return result
