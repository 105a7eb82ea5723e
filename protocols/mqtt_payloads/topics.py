"""The topics amiflow ingests, and the dispatch of a message to its decoder.

``{prefix}`` is ``ami/v1`` by default; ``tele/{device}/...`` are Tasmota's own topics.
"""

from __future__ import annotations

from dataclasses import dataclass

from .envelope import Decoded, reject
from .events import decode_cmd_result, decode_events, decode_status
from .p1_text import decode_p1
from .readings import decode_readings
from .tasmota import decode_tasmota

__all__ = ["TopicRef", "decode", "parse_topic", "topic_filters"]


@dataclass(frozen=True, slots=True)
class TopicRef:
    """What a topic names: ``kind`` is readings, events, status, cmd_result, p1 or tasmota."""

    kind: str
    meter: str


def topic_filters(prefix: str = "ami/v1") -> list[str]:
    """The subscription filters of an ingest worker (without the ``$share/{group}/`` part)."""
    return [
        f"{prefix}/+/readings",
        f"{prefix}/+/events",
        f"{prefix}/+/status",
        f"{prefix}/+/cmd/result",
        f"{prefix}/+/p1",
        "tele/+/SENSOR",
        "tele/+/LWT",
    ]


def parse_topic(topic: str, prefix: str = "ami/v1") -> TopicRef | None:
    """Map a topic to (kind, meter); None for topics amiflow does not ingest."""
    if topic.startswith("tele/") and topic.endswith("/SENSOR"):
        device = topic[5:-7]
        return TopicRef("tasmota", device) if device and "/" not in device else None
    if topic.startswith("tele/") and topic.endswith("/LWT"):  # Tasmota's will: plain "Online" / "Offline"
        device = topic[5:-4]
        return TopicRef("status", device) if device and "/" not in device else None
    head = prefix + "/"
    if not topic.startswith(head):
        return None
    rest = topic[len(head) :]
    meter, sep, tail = rest.partition("/")
    if not meter or not sep:
        return None
    kind = {"readings": "readings", "events": "events", "status": "status", "cmd/result": "cmd_result", "p1": "p1"}
    found = kind.get(tail)
    return TopicRef(found, meter) if found else None


def decode(topic: str, raw: bytes, *, prefix: str = "ami/v1", received_ts: int) -> tuple[TopicRef | None, Decoded]:
    """Dispatch on the topic; an unknown topic gives (None, a rejected ``unknown_topic`` result)."""
    ref = parse_topic(topic, prefix)
    if ref is None:
        return None, reject("unknown_topic", f"topic {topic!r} is not ingested", None, raw)
    if ref.kind == "readings":
        return ref, decode_readings(raw, topic_meter=ref.meter)
    if ref.kind == "events":
        return ref, decode_events(raw, topic_meter=ref.meter)
    if ref.kind == "status":
        return ref, decode_status(raw, topic_meter=ref.meter, received_ts=received_ts)
    if ref.kind == "cmd_result":
        return ref, decode_cmd_result(raw, topic_meter=ref.meter, received_ts=received_ts)
    if ref.kind == "p1":
        return ref, decode_p1(raw, topic_meter=ref.meter, received_ts=received_ts)
    return ref, decode_tasmota(raw, device=ref.meter)
