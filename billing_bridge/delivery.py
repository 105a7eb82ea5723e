"""The pure core of outbox delivery: items, outcomes, body bytes, signatures, classification and backoff.

No I/O, no clock, no randomness of its own: the dispatcher passes a random draw in. The body of an item is its stored
payload serialized deterministically (sorted keys, compact separators, UTF-8), so every retry sends byte-identical
content under the same Idempotency-Key, and the signature is ``sha256=<hex HMAC-SHA256 of exactly those bytes>``.

Each attempt also carries ``X-Amiflow-Timestamp`` (Unix seconds), ``X-Amiflow-Nonce`` (random, new per attempt, so
two attempts within one second differ) and ``X-Amiflow-Signature-V2: sha256=<hex HMAC-SHA256 of
"<timestamp>.<nonce>.<Idempotency-Key>.<body>">``, so a receiver can refuse a stale or replayed request
(:mod:`billing_bridge.signatures`); the first signature stays as it was for receivers that check only it.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

__all__ = [
    "OutboxItem",
    "Outcome",
    "Verdict",
    "backoff_s",
    "canonical_body",
    "classify_status",
    "endpoint_for",
    "retry_after_s",
    "sign",
    "sign_v2",
    "signature_headers",
    "verify",
]

# Client errors that say "not now" rather than "never": retried like 5xx (RFC 9110 408, RFC 8470 425, RFC 6585 429).
_RETRYABLE_4XX = frozenset({408, 425, 429})


class Verdict(enum.Enum):
    """What a delivery attempt means for the outbox row."""

    DELIVERED = "delivered"
    REJECTED = "rejected"
    RETRY = "retry"


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One claimed outbox row: the body bytes are fixed at claim time from the stored payload."""

    id: int
    kind: str
    idempotency_key: str
    account: str | None
    payload: dict[str, Any]
    attempts: int
    claim_token: str

    @property
    def body(self) -> bytes:
        return canonical_body(self.payload)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one delivery attempt of item ``id`` (``sent`` False: never left, retry at once)."""

    id: int
    verdict: Verdict
    code: int | None = None
    error: str | None = None
    retry_after_s: float | None = None
    sent: bool = True


def canonical_body(payload: dict[str, Any]) -> bytes:
    """The deterministic JSON bytes of ``payload`` (the same stored payload always gives the same bytes)."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def sign(body: bytes, secret: bytes) -> str:
    """The ``X-Amiflow-Signature`` header value for ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(body: bytes, header: str | None, secret: bytes) -> bool:
    """True when ``header`` is the signature of ``body`` under ``secret`` (constant-time comparison)."""
    if not header or not header.startswith("sha256="):
        return False
    return hmac.compare_digest(sign(body, secret).encode(), header.strip().encode())


def sign_v2(body: bytes, secret: bytes, timestamp: str, nonce: str, key: str = "") -> str:
    """The ``X-Amiflow-Signature-V2`` value: the MAC covers the timestamp, the nonce, the Idempotency-Key (empty when
    the request has none, as the inbound billing API's) and the body, separated by dots."""
    message = b"%s.%s.%s.%s" % (timestamp.encode(), nonce.encode(), key.encode(), body)
    return "sha256=" + hmac.new(secret, message, hashlib.sha256).hexdigest()


def signature_headers(body: bytes, secret: bytes, now_s: float, nonce: str, key: str = "") -> dict[str, str]:
    """The four signature headers of one attempt at ``now_s`` with a fresh random ``nonce`` (the body signature of
    CONTRACT.md, the timestamp, the nonce and the timestamped signature)."""
    timestamp = str(int(now_s))
    return {
        "X-Amiflow-Signature": sign(body, secret),
        "X-Amiflow-Timestamp": timestamp,
        "X-Amiflow-Nonce": nonce,
        "X-Amiflow-Signature-V2": sign_v2(body, secret, timestamp, nonce, key),
    }


def endpoint_for(kind: str) -> str:
    """The webhook path for an outbox kind: ``/bills`` for kind ``bill``, ``/notices`` for everything else (the notice
    engine queues kind ``notice`` with the notice type in the payload's ``type``)."""
    return "/bills" if kind == "bill" else "/notices"


def classify_status(status: int) -> Verdict:
    """2xx and 409 (already have it) = delivered; 408/425/429 and 5xx = retry; other 4xx = rejected."""
    if 200 <= status < 300 or status == 409:
        return Verdict.DELIVERED
    if status in _RETRYABLE_4XX or status >= 500:
        return Verdict.RETRY
    if 400 <= status < 500:
        return Verdict.REJECTED
    # 1xx/3xx: the webhook never redirects; treat as a transient misconfiguration rather than dropping the item.
    return Verdict.RETRY


def retry_after_s(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header in its delta-seconds form (an HTTP date is ignored)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def backoff_s(attempts: int, base_s: float, max_s: float, draw: float, retry_after: float | None = None) -> float:
    """Delay before the next attempt after ``attempts`` failed ones: exponential with equal jitter.

    ``draw`` is a uniform random number in [0, 1): the delay lies in [d/2, d) with d = min(max_s, base_s * 2**(n-1)),
    so concurrent dispatchers de-synchronize while the growth stays exponential. A server's Retry-After is honoured
    as a lower bound (capped at ``max_s``).
    """
    n = max(1, attempts)
    ceiling = min(max_s, base_s * 2.0 ** min(n - 1, 62))
    delay = ceiling * (0.5 + 0.5 * min(max(draw, 0.0), 1.0))
    if retry_after is not None:
        delay = max(delay, min(retry_after, max_s))
    return delay
