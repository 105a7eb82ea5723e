"""From received MQTT messages to one prepared batch: decoding and grouping, no I/O and no clock."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from amiflow.types import Issue, ReadingBatch, Source
from protocols.mqtt_payloads import Columns, Decoded, MeterEvent, decode, decode_reading_rows, parse_topic

__all__ = ["BatchBuilder", "Message", "Prepared", "QuarantineRow"]


@dataclass(frozen=True, slots=True)
class Message:
    """One received message. ``mid``/``gen`` identify it to the MQTT session (gen = connection generation: an ack
    is only valid on the connection that delivered it); spooled messages have ``mid`` 0."""

    topic: str
    payload: bytes
    received_at: float
    mid: int = 0
    qos: int = 1
    gen: int = 0
    t_mono: float = 0.0


@dataclass(frozen=True, slots=True)
class QuarantineRow:
    """What ingest stores in ``amiflow.quarantine`` for one message and reason; ``readings`` = readings it held."""

    reason: str
    meter: str | None
    raw: bytes
    detail: str
    readings: int = 0


@dataclass(slots=True)
class Prepared:
    """A decoded batch: readings (with the index of the message each row came from), events, states, rejects."""

    messages: list[Message] = field(default_factory=list)
    parts: list[ReadingBatch] = field(default_factory=list)
    part_msg: list[int] = field(default_factory=list)
    # canonical readings as rows (cheaper than one small batch per message): meter, (obis, unit, ts, value), message
    row_meter: list[str] = field(default_factory=list)
    row_obis: list[str] = field(default_factory=list)
    row_unit: list[str] = field(default_factory=list)
    row_ts: list[int] = field(default_factory=list)
    row_value: list[float] = field(default_factory=list)
    row_msg: list[int] = field(default_factory=list)
    events: list[tuple[int, MeterEvent]] = field(default_factory=list)
    states: dict[str, tuple[str, int]] = field(default_factory=dict)  # meter -> (state, ts), latest wins
    seen: dict[str, tuple[float, str]] = field(default_factory=dict)  # meter -> (received_at, protocol)
    quarantine: list[QuarantineRow] = field(default_factory=list)
    readings: int = 0

    def batch(self) -> tuple[ReadingBatch, npt.NDArray[np.int32]]:
        """All readings as one batch, and per row the index (into ``messages``) of its message."""
        batches, index = (
            list(self.parts),
            [np.repeat(np.asarray(self.part_msg, dtype=np.int32), [len(p) for p in self.parts])],
        )
        if self.row_ts:
            n = len(self.row_ts)
            batches.append(
                ReadingBatch(
                    meter=np.array(self.row_meter, dtype=object),
                    obis=np.array(self.row_obis, dtype=object),
                    ts=np.array(self.row_ts, dtype=np.int64),
                    value=np.array(self.row_value, dtype=np.float64),
                    quality=np.zeros(n, dtype=np.int32),
                    source=np.full(n, int(Source.MQTT), dtype=np.int16),
                    unit=np.array(self.row_unit, dtype=object),
                )
            )
            index.append(np.array(self.row_msg, dtype=np.int32))
        if not batches:
            return ReadingBatch(), np.empty(0, dtype=np.int32)
        return ReadingBatch.concat(batches), np.concatenate(index)


def _issue_rows(topic: str, issues: tuple[Issue, ...], raw: bytes, meter: str | None) -> list[QuarantineRow]:
    by_code: dict[str, list[Issue]] = {}
    for issue in issues:
        by_code.setdefault(issue.code, []).append(issue)
    out = []
    for code, found in by_code.items():
        where = [i.extra["index"] for i in found if "index" in i.extra]
        detail = {"topic": topic, "detail": found[0].detail, "count": len(found)}
        if where:
            detail["index"] = where[:100]
        claimed = sum(int(i.extra.get("readings", 0)) for i in found)
        out.append(QuarantineRow(code, found[0].meter or meter, raw, json.dumps(detail), len(where) + claimed))
    return out


class BatchBuilder:
    """Decodes messages into a :class:`Prepared` batch; ``readings`` tells when the batch is big enough."""

    def __init__(self, *, prefix: str = "ami/v1", tasmota_prefix: str = "tele") -> None:
        self.prefix = prefix
        self.tasmota_prefix = tasmota_prefix
        self.prepared = Prepared()

    def __len__(self) -> int:
        return len(self.prepared.messages)

    @property
    def readings(self) -> int:
        return self.prepared.readings

    def add(self, msg: Message) -> None:
        """Decode ``msg`` into the batch; never raises for bad payloads (they become quarantine rows)."""
        p = self.prepared
        index = len(p.messages)
        p.messages.append(msg)
        topic = msg.topic
        if self.tasmota_prefix != "tele" and topic.startswith(self.tasmota_prefix + "/"):
            topic = "tele/" + topic[len(self.tasmota_prefix) + 1 :]
        ref = parse_topic(topic, self.prefix)
        cols: Columns | None = None
        d: Decoded
        if ref is not None and ref.kind == "readings":
            d, cols = decode_reading_rows(msg.payload, topic_meter=ref.meter)
        else:
            ref, d = decode(topic, msg.payload, prefix=self.prefix, received_ts=int(msg.received_at))
        meter = ref.meter if ref else None
        bad = tuple(i for i in d.issues if not i.informational)  # "read this way" notes are not quarantined
        if bad:
            p.quarantine.extend(_issue_rows(msg.topic, bad, msg.payload, meter))
        if d.rejected or ref is None:
            return
        if ref.kind == "cmd_result" or ref.kind == "status" or ref.kind == "events":
            p.events.extend((index, e) for e in d.events)
        if d.state is not None and d.state_ts is not None:
            old = p.states.get(ref.meter)
            if old is None or old[1] <= d.state_ts:
                p.states[ref.meter] = (d.state, d.state_ts)
        if cols is not None and cols[0]:
            n = len(cols[0])
            p.row_obis.extend(cols[0])
            p.row_unit.extend(cols[1])
            p.row_ts.extend(cols[2])
            p.row_value.extend(cols[3])
            p.row_meter.extend([ref.meter] * n)
            p.row_msg.extend([index] * n)
            p.readings += n
        if len(d.batch):
            p.parts.append(d.batch)
            p.part_msg.append(index)
            p.readings += len(d.batch)
        protocol = "p1" if ref.kind == "p1" else "mqtt"
        seen = p.seen.get(ref.meter)
        if seen is None or seen[0] < msg.received_at:
            p.seen[ref.meter] = (msg.received_at, protocol)

    def take(self) -> Prepared:
        """The batch so far; the builder starts a new one."""
        out, self.prepared = self.prepared, Prepared()
        return out
