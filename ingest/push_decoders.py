"""What a push meter's byte stream says, frame by frame: sans-I/O adapters from the SML and P1 codecs to the reader.

A push meter (an SML eHZ on its optical port, a DSMR meter on its P1 port) sends whether anyone listens or not; a
reader attaches mid-frame, a head slips, a bit flips. An adapter takes chunks as they arrive (``feed(chunk,
received_ts)``) and gives back, per frame, a :class:`GoodFrame` (its readings, already named by the registered
meter) or a :class:`BadFrame` (the raw bytes and a stable reason for the quarantine). ``close()`` says the link
ended: a frame under way is ``truncated``. Bytes outside frames are counted in ``skipped``, never quarantined (they
are noise, not a frame).

Meter identity:

- SML: the readings are stored under the registered name; the file's own id must match it, compared without spaces
  and case (``1 EMH00 12345678`` on the nameplate is registered as ``1EMH0012345678``), either the nameplate id the
  codec derives or the compact server id (:func:`protocols.sml.format_server_id`). A URI's ``?server_id=`` names the
  expected id when the registry name is another (``sml+tcp://10.0.0.7:3001?server_id=1EMH0012345678``). A file of
  another meter is a ``wrong_meter`` bad frame: an IR head moved to the neighbour's meter must not bill him.
- P1: the registered meter names the readings, as the MQTT topic does for ``p1`` text (protocols.p1's ``meter``).

Issue severity: frames whose only issues are informational (SML: a message CRC quirk under a good transport CRC, an
unknown message body, a unit amiflow does not store; P1: :func:`protocols.p1.is_informational`) are good. A frame
with other issues is still good when it gave readings (the transport CRC vouches for the bytes); it is bad only
when nothing could be read from it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Final, Protocol

import numpy as np

from amiflow.errors import ConfigError
from amiflow.types import Issue, ReadingBatch
from amiflow.uri import MeterUri
from protocols.p1 import NEED_DATA, P1Splitter, is_informational, parse_telegram
from protocols.sml import FrameFault, SmlFrame, SmlStreamDecoder, format_server_id, parse_messages, sml_readings

__all__ = ["SML_INFO", "BadFrame", "GoodFrame", "P1Push", "PushDecoder", "SmlPush", "push_decoder"]

#: SML issue codes of files that decoded: unusual, not broken.
SML_INFO: Final = frozenset({"message_crc_mismatch", "unknown_message", "unsupported_unit"})
_RAW_MAX: Final = 65_536


@dataclass(frozen=True, slots=True)
class GoodFrame:
    """A frame that decoded: its readings (maybe none: an SML Attention file) and its issues."""

    raw: bytes
    batch: ReadingBatch
    issues: tuple[Issue, ...] = ()


@dataclass(frozen=True, slots=True)
class BadFrame:
    """A frame that gave nothing: quarantined with ``raw`` as received and a stable ``reason``."""

    raw: bytes
    reason: str
    detail: str


PushEvent = GoodFrame | BadFrame


class PushDecoder(Protocol):
    """The shape every push adapter has (``protocol`` is the quarantine source: ``sml`` or ``p1``)."""

    protocol: str
    skipped: int

    def feed(self, chunk: bytes, received_ts: int) -> list[PushEvent]: ...

    def close(self, received_ts: int) -> list[PushEvent]: ...


def _compact(meter_id: str) -> str:
    return "".join(meter_id.split()).lower()


def _renamed(batch: ReadingBatch, meter: str) -> ReadingBatch:
    names = np.empty(len(batch), dtype=object)
    names[:] = meter
    return dataclasses.replace(batch, meter=names)


class SmlPush:
    """SML files (transport v1) off a push link, for the registered ``meter`` (see the module docstring)."""

    protocol = "sml"

    def __init__(self, meter: str, *, expected_id: str | None = None, dzg_unsigned_power: bool = False) -> None:
        self.meter = meter
        self.expected = _compact(expected_id or meter)
        self.dzg_unsigned_power = dzg_unsigned_power
        self.skipped = 0
        self._decoder = SmlStreamDecoder()

    def feed(self, chunk: bytes, received_ts: int) -> list[PushEvent]:
        before = self._decoder.skipped
        self._decoder.receive_data(chunk)
        events: list[PushEvent] = []
        while (event := self._decoder.next_event()) is not None:
            events.append(self._event(event, received_ts))
        self.skipped += self._decoder.skipped - before
        return events

    def close(self, received_ts: int) -> list[PushEvent]:
        events = self.feed(b"", received_ts)  # the stream ended: a frame under way is truncated
        self._decoder = SmlStreamDecoder()
        return events

    def _event(self, event: SmlFrame | FrameFault, received_ts: int) -> PushEvent:
        if isinstance(event, FrameFault):
            return BadFrame(event.raw[:_RAW_MAX], event.code, event.detail)
        messages, found = parse_messages(event.body, trusted=True)
        result = sml_readings(messages, received_ts=received_ts, dzg_unsigned_power=self.dzg_unsigned_power, meter=None)
        ids = {_compact(result.meter)} if result.meter else set()
        for m in messages:
            server = getattr(m.body, "server_id", None)
            if isinstance(server, bytes) and server:
                ids.add(_compact(format_server_id(server, compact=True)))
        issues = tuple(found) + result.issues
        if not len(result.batch):
            errors = [i for i in issues if i.code not in SML_INFO]
            if errors:
                return BadFrame(event.raw, errors[0].code, errors[0].detail)
            return GoodFrame(event.raw, result.batch, issues)
        if self.expected not in ids:
            seen = result.meter or "no id"
            detail = f"the SML file is from meter {seen!r}; this link is registered for {self.meter!r}"
            return BadFrame(event.raw, "wrong_meter", detail + f" (expected id {self.expected!r})")
        return GoodFrame(event.raw, _renamed(result.batch, self.meter), issues)


class P1Push:
    """DSMR P1 telegrams off a push link; the registered ``meter`` names the readings."""

    protocol = "p1"

    def __init__(self, meter: str) -> None:
        self.meter = meter
        self.skipped = 0
        self._splitter = P1Splitter()

    def feed(self, chunk: bytes, received_ts: int) -> list[PushEvent]:
        s = self._splitter
        s.receive_data(chunk)
        events: list[PushEvent] = []
        while True:
            pending, truncated, discarded = s.pending, s.truncated, s.discarded
            raw = s.next_event()
            if s.truncated > truncated:  # a telegram began and a new one started before its end
                cut = pending.find(b"/", 1)
                detail = f"{s.truncated - truncated} telegram(s) began with '/' and never reached '!' and the CRC"
                events.append(BadFrame(pending[:cut] if cut > 0 else pending[:_RAW_MAX], "truncated", detail))
                discarded += cut if cut > 0 else 0
            self.skipped += max(0, s.discarded - discarded)
            if raw is NEED_DATA:
                return events
            events.append(self._event(raw, received_ts))

    def close(self, received_ts: int) -> list[PushEvent]:
        pending = self._splitter.pending
        self._splitter = P1Splitter()
        if not pending:
            return []
        return [BadFrame(pending[:_RAW_MAX], "truncated", "the link ended inside a telegram")]

    def _event(self, raw: bytes, received_ts: int) -> PushEvent:
        batch, issues = parse_telegram(raw, meter=self.meter, received_ts=received_ts)
        errors = [i for i in issues if not is_informational(i)]
        if not len(batch) and errors:
            return BadFrame(raw, errors[0].code, errors[0].detail)
        return GoodFrame(raw, batch, tuple(issues))


def push_decoder(meter: str, uri: MeterUri) -> SmlPush | P1Push:
    """The adapter for a registered push meter's URI (``sml+serial``, ``sml+tcp``, ``p1``, ``p1+tcp``)."""
    if uri.protocol == "sml":
        quirk = uri.params.get("quirks", "") == "dzg_unsigned_power"
        return SmlPush(meter, expected_id=uri.params.get("server_id") or None, dzg_unsigned_power=quirk)
    if uri.protocol == "p1":
        return P1Push(meter)
    raise ConfigError(f"meter {meter}: {uri.protocol} meters are not push meters (sml, p1)")
