"""Checking signed requests: the body signature of CONTRACT.md and the timestamped one that stops replays.

A sender (amiflow's webhook, or a billing system calling amiflow's API) signs with a shared secret
(:func:`billing_bridge.delivery.signature_headers`):

- ``X-Amiflow-Signature: sha256=<hex HMAC-SHA256(secret, body)>`` (CONTRACT.md; proves the body, not when it was sent);
- ``X-Amiflow-Timestamp: <Unix seconds>``, ``X-Amiflow-Nonce: <8-64 of A-Z a-z 0-9 _ ->`` (new per attempt) and
  ``X-Amiflow-Signature-V2: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<nonce>.<Idempotency-Key>.<body>")>``
  (proves the body, its key and the moment; the Idempotency-Key part is empty when the request has none).

:class:`SignatureVerifier` accepts a timestamped signature when its timestamp lies within ``max_age_s`` of the
receiver's clock (either side: clocks drift) and it has not been seen before in that window; a replay of the same
request inside the window is refused, and outside it the timestamp is stale. A body-only signature is accepted as
``LEGACY`` unless ``require_timestamp``: receivers turn that on once every sender signs with timestamps. Every refusal
is counted and logged (at most once per ``log_every_s`` per kind, with the number since), never with the secret.
"""

from __future__ import annotations

import enum
import heapq
import hmac
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping

from billing_bridge.delivery import sign_v2, verify

__all__ = ["SignatureCheck", "SignatureVerifier"]

log = logging.getLogger(__name__)

_NONCE = re.compile(r"[A-Za-z0-9_-]{8,64}")


class SignatureCheck(enum.Enum):
    """The verdict on one request's signature headers."""

    OK = "ok"  # timestamped, fresh, first use
    LEGACY = "legacy"  # a valid body-only signature (accepted unless timestamps are required)
    MISSING = "missing"  # no signature header at all
    BAD = "bad"  # a signature or timestamp that does not verify
    STALE = "stale"  # a valid timestamped signature outside the window
    REPLAYED = "replayed"  # a valid timestamped signature seen before within the window
    UNSIGNED = "unsigned"  # a valid body-only signature where timestamps are required

    @property
    def accepted(self) -> bool:
        return self in (SignatureCheck.OK, SignatureCheck.LEGACY)


class SignatureVerifier:
    """Verifies the signature headers of requests under one secret; thread-safe, remembers signatures it accepted
    for the window (memory grows with the request rate times twice the window)."""

    def __init__(
        self,
        secret: bytes,
        *,
        max_age_s: float = 300.0,
        require_timestamp: bool = False,
        clock: Callable[[], float] = time.time,
        log_every_s: float = 10.0,
        name: str = "signature",
    ) -> None:
        self._secret = secret
        self.max_age_s = max_age_s
        self.require_timestamp = require_timestamp
        self._clock = clock
        self._log_every_s = log_every_s
        self._name = name
        self._seen: dict[str, float] = {}
        self._expiry: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self.refused: Counter[SignatureCheck] = Counter()
        self._unlogged: Counter[SignatureCheck] = Counter()
        self._logged_at: dict[SignatureCheck, float] = {}

    def check(self, body: bytes, headers: Mapping[str, str], *, key: str = "", where: str = "") -> SignatureCheck:
        """The verdict on ``body`` with ``headers`` (lower-case names, as Starlette's or a plain dict of them)."""
        verdict = self._verdict(body, headers, key)
        if not verdict.accepted:
            self._refused(verdict, where)
        return verdict

    def _verdict(self, body: bytes, headers: Mapping[str, str], key: str) -> SignatureCheck:
        v2 = headers.get("x-amiflow-signature-v2")
        timestamp = headers.get("x-amiflow-timestamp")
        if v2 is not None or timestamp is not None:
            nonce = (headers.get("x-amiflow-nonce") or "").strip()
            return self._timestamped(body, (timestamp or "").strip(), nonce, (v2 or "").strip(), key)
        legacy = headers.get("x-amiflow-signature")
        if legacy is None:
            return SignatureCheck.MISSING
        if not verify(body, legacy, self._secret):
            return SignatureCheck.BAD
        return SignatureCheck.UNSIGNED if self.require_timestamp else SignatureCheck.LEGACY

    def _timestamped(self, body: bytes, timestamp: str, nonce: str, signature: str, key: str) -> SignatureCheck:
        if not timestamp.isdigit() or len(timestamp) > 12 or not _NONCE.fullmatch(nonce):
            return SignatureCheck.BAD
        if not hmac.compare_digest(sign_v2(body, self._secret, timestamp, nonce, key).encode(), signature.encode()):
            return SignatureCheck.BAD
        now = self._clock()
        with self._lock:
            while self._expiry and self._expiry[0][0] < now:  # forget what the window no longer covers
                _, old = heapq.heappop(self._expiry)
                self._seen.pop(old, None)
            if abs(now - int(timestamp)) > self.max_age_s:
                return SignatureCheck.STALE
            if signature in self._seen:
                return SignatureCheck.REPLAYED
            expires = int(timestamp) + self.max_age_s
            self._seen[signature] = expires
            heapq.heappush(self._expiry, (expires, signature))
        return SignatureCheck.OK

    def _refused(self, verdict: SignatureCheck, where: str) -> None:
        now = time.monotonic()
        with self._lock:
            self.refused[verdict] += 1
            last = self._logged_at.get(verdict)
            if last is not None and now - last < self._log_every_s:
                self._unlogged[verdict] += 1
                return
            self._logged_at[verdict] = now
            since = self._unlogged.pop(verdict, 0)
        log.warning(
            "%s refused (%s)%s%s",
            self._name,
            verdict.value,
            f" at {where}" if where else "",
            f"; {since} more refused like it since the last report" if since else "",
            extra={"signature_check": verdict.value, "path": where},
        )
