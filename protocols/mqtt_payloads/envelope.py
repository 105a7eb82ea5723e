"""What every MQTT payload decoder returns (:class:`Decoded`) and the payload-level checks they share.

A payload-level issue (``not_json``, ``too_large``, ``schema``, ``meter_mismatch``) rejects the whole payload:
:func:`reject` builds that answer, :func:`load_json` applies the size limit and parses the JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from amiflow.types import Issue, ReadingBatch

__all__ = ["MAX_PAYLOAD_BYTES", "CommandResult", "Decoded", "MeterEvent", "load_json", "reject"]

MAX_PAYLOAD_BYTES = 4 << 20  # a meter-year of 15-minute intervals is ~1.6 MB; anything bigger is not a meter


@dataclass(frozen=True, slots=True)
class MeterEvent:
    """One meter event (``amiflow.meter_events``); ``ts`` epoch seconds UTC."""

    meter: str
    ts: int
    code: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CommandResult:
    """A device's answer to a ``cmd`` message."""

    meter: str
    id: str
    status: str
    relay: str | None


_NO_READINGS = ReadingBatch()  # shared: an empty batch per message would cost 7 numpy allocations


@dataclass(frozen=True, slots=True)
class Decoded:
    """The result of decoding one MQTT message.

    ``rejected`` is True when the whole payload is unusable (then ``batch`` is empty); ``issues`` may also name
    single readings that were dropped while the rest of the payload is kept.
    """

    batch: ReadingBatch = field(default=_NO_READINGS)
    events: tuple[MeterEvent, ...] = ()
    issues: tuple[Issue, ...] = ()
    rejected: bool = False
    seq: int | None = None
    state: str | None = None  # online/offline from a status message
    state_ts: int | None = None
    command: CommandResult | None = None


def reject(code: str, detail: str, meter: str | None, raw: bytes) -> Decoded:
    """The whole payload is unusable: no readings, one issue."""
    return Decoded(issues=(Issue(code, detail, meter=meter, raw=raw),), rejected=True)


def load_json(raw: bytes, meter: str | None) -> tuple[Any, Decoded | None]:
    """(the parsed document, None), or (None, the rejection) for an oversized or non-JSON payload."""
    if len(raw) > MAX_PAYLOAD_BYTES:
        return None, reject("too_large", f"payload of {len(raw)} bytes exceeds {MAX_PAYLOAD_BYTES}", meter, raw)
    try:
        return json.loads(raw), None
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        return None, reject("not_json", f"payload is not JSON: {exc}", meter, raw)
