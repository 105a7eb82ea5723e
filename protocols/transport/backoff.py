"""Retries of transport failures with jittered exponential backoff ("full jitter")."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from amiflow.errors import ConfigError, TransportError

from .breaker import CircuitOpen

__all__ = ["backoff_delays", "retry"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def backoff_delays(attempts: int, base_s: float, max_s: float, rng: random.Random | None = None) -> list[float]:
    """The sleeps between ``attempts`` tries: uniform in [0, min(max_s, base_s * 2**i)] ("full jitter")."""
    r = rng or random.Random()
    return [r.uniform(0.0, min(max_s, base_s * 2**i)) for i in range(max(0, attempts - 1))]


async def retry(
    fn: Callable[[], Awaitable[T]],
    attempts: int = 3,
    base_s: float = 0.5,
    max_s: float = 30.0,
    *,
    retry_on: tuple[type[BaseException], ...] = (TransportError,),
    rng: random.Random | None = None,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> T:
    """Call ``fn()`` up to ``attempts`` times, sleeping a jittered exponential backoff between tries.

    Only ``retry_on`` errors are retried (never CircuitOpen: the breaker already said no); the last error is raised.
    """
    if attempts < 1:
        raise ConfigError(f"retry: attempts must be >= 1, got {attempts}")
    delays = backoff_delays(attempts, base_s, max_s, rng)
    for i in range(attempts):
        try:
            return await fn()
        except CircuitOpen:
            raise
        except retry_on as exc:
            if i == attempts - 1:
                raise
            log.debug("attempt %d/%d failed (%s); retrying in %.2f s", i + 1, attempts, exc, delays[i])
            await sleep(delays[i])
    raise AssertionError("unreachable")  # pragma: no cover
