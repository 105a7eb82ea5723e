"""Heard wireless M-Bus frames -> readings of registered meters, or a quarantine reason: pure, no I/O, no clock.

The registry names the meters that may be heard (protocol ``wmbus``, URI ``wmbus://IDENT?manufacturer=MFR``) and
their AES keys (``amiflow.meter_keys``); :class:`Senders` is a snapshot of both. A frame is decoded with the keys
of the registry (OMS mode 5), its sender (the TPL header's identity, else the link layer's) looked up by
manufacturer and ident number (a registered URI without a manufacturer matches any), and its current values mapped
to channels by :func:`protocols.mbus.readings.mbus_readings` (source ``wmbus``). Reasons, stable codes of
``amiflow.quarantine`` (the frame's raw bytes kept)::

    bad_crc               a block's CRC does not match (format A or B)
    bad_frame             not a wM-Bus frame (length field, too short, ...)
    unknown_meter         the sender is not a registered wmbus meter
    no_key                the sender encrypts (mode 5) and the registry holds no key for it
    bad_key               the registry's key does not decrypt the frame
    unsupported_security  another security mode (7, ELL AES-CTR)
    <issue code>          a telegram the decoder reports on (unsupported_ci, truncated_header, bad_value, ...):
                          quarantined even when some of its values were stored (``detail.readings`` says how many)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from amiflow.errors import FrameError
from amiflow.types import ReadingBatch, Source
from amiflow.uri import parse_meter_uri
from protocols.mbus.header import DeviceHeader
from protocols.mbus.readings import mbus_readings
from protocols.mbus.security import KeyRing
from protocols.mbus.wmbus import decode_wmbus

__all__ = ["Decoded", "Senders", "decode_frame"]

_ISSUE_REASONS = {"encrypted": "no_key", "bad_key": "bad_key", "unsupported_security": "unsupported_security"}


class Senders:
    """The registered wM-Bus meters (name, URI) and their keys (name -> 16 bytes); ``repr`` shows no key."""

    def __init__(self, meters: Iterable[tuple[str, str]] = (), keys: Mapping[str, bytes] | None = None) -> None:
        self._meters: dict[tuple[str | None, str], str] = {}
        self.keys = KeyRing()
        for name, uri_text in meters:
            uri = parse_meter_uri(uri_text)
            ident, maker = str(uri.host), uri.params.get("manufacturer")
            self._meters[(maker, ident)] = name
            if keys and name in keys:
                self.keys.add(f"{maker}:{ident}" if maker else ident, keys[name])

    def meter_for(self, header: DeviceHeader) -> str | None:
        """The registered meter that sent ``header`` (manufacturer and ident, or the ident alone)."""
        return self._meters.get((header.manufacturer, header.ident)) or self._meters.get((None, header.ident))

    def __len__(self) -> int:
        return len(self._meters)

    def __repr__(self) -> str:
        return f"Senders({len(self._meters)} meters, {len(self.keys)} keys)"


@dataclass(frozen=True, slots=True)
class Decoded:
    """One frame: its readings (possibly none), and a quarantine ``reason`` + JSON ``detail`` when it has one."""

    raw: bytes
    ts: int
    meter: str | None = None
    batch: ReadingBatch = field(default_factory=ReadingBatch)
    reason: str | None = None
    detail: str | None = None


def _sender_text(header: DeviceHeader | None) -> dict[str, object]:
    if header is None:
        return {}
    return {"manufacturer": header.manufacturer, "ident": header.ident, "medium": header.medium_name}


def decode_frame(raw: bytes, ts: int, senders: Senders) -> Decoded:
    """Decode one heard frame (received at ``ts``, epoch s) against the registry snapshot ``senders``."""
    try:
        telegram = decode_wmbus(raw, keys=senders.keys)
    except FrameError as exc:
        reason = "bad_crc" if "CRC" in str(exc) else "bad_frame"
        return Decoded(raw, ts, reason=reason, detail=json.dumps({"detail": str(exc)}))
    header = telegram.header
    meter = senders.meter_for(header) if header is not None else None
    if meter is None:
        detail = {"detail": "the sender is not a registered wmbus meter", **_sender_text(header)}
        return Decoded(raw, ts, reason="unknown_meter", detail=json.dumps(detail))
    batch = mbus_readings(header, telegram.records, received_ts=ts, meter=meter, source=Source.WMBUS).batch
    issues = [i for i in telegram.issues if not i.informational]
    if not issues:
        return Decoded(raw, ts, meter, batch)
    issue = issues[0]
    reason = _ISSUE_REASONS.get(issue.code, issue.code)
    detail = {"detail": issue.detail, "issues": len(issues), "readings": len(batch), **_sender_text(header)}
    return Decoded(raw, ts, meter, batch, reason, json.dumps(detail))
