"""``{prefix}/{meter}/p1``: a DSMR P1 telegram published as text, decoded by :func:`protocols.p1.parse_telegram`."""

from __future__ import annotations

from amiflow.types import Issue

from .envelope import MAX_PAYLOAD_BYTES, Decoded, reject

__all__ = ["decode_p1"]


def decode_p1(raw: bytes, *, topic_meter: str, received_ts: int | None = None) -> Decoded:
    """Decode a DSMR P1 telegram published as text on ``{prefix}/{meter}/p1`` (CRC-checked by protocols.p1).

    ``received_ts`` stamps the readings of a telegram without a clock line (DSMR 2.2/3.0)."""
    if len(raw) > MAX_PAYLOAD_BYTES:
        return reject("too_large", f"telegram of {len(raw)} bytes", topic_meter, raw)
    try:
        from protocols.p1 import parse_telegram  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return reject("unsupported", "the DSMR P1 decoder (protocols.p1) is not installed", topic_meter, raw)
    try:
        batch, issues = parse_telegram(raw, meter=topic_meter, received_ts=received_ts)
    except Exception as exc:  # a decoder bug must not crash the worker: the telegram is quarantined instead
        return reject("decoder_error", f"P1 decoder failed: {type(exc).__name__}: {exc}", topic_meter, raw)
    out = tuple(Issue(i.code, i.detail, meter=topic_meter, raw=raw, extra=i.extra) for i in issues)
    if len(batch) and (batch.meter != topic_meter).any():
        return reject("meter_mismatch", "the telegram's equipment id names another meter", topic_meter, raw)
    return Decoded(batch=batch, issues=out, rejected=not len(batch) and any(not i.informational for i in out))
