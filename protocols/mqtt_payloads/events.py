"""What a meter says about itself, as meter events: its event log, its online state, its answers to commands.

``{prefix}/{meter}/events``       ``{"meter", "events": [{"ts", "code", "detail"}, ...]}``
``{prefix}/{meter}/status``       ``{"state": "online|offline", "ts"}`` (retained; the device's last will)
``{prefix}/{meter}/cmd/result``   ``{"id", "status": "ok|rejected|failed", "relay"}``
"""

from __future__ import annotations

from typing import Any

from amiflow.types import Issue

from .envelope import CommandResult, Decoded, MeterEvent, load_json, reject
from .fields import parse_ts

__all__ = ["EVENT_CODES", "decode_cmd_result", "decode_events", "decode_status"]

EVENT_CODES = frozenset({"power_down", "power_up", "tamper", "relay_open", "relay_closed", "clock_adjusted"})
_STATES = frozenset({"online", "offline"})
_CMD_STATUSES = frozenset({"ok", "rejected", "failed"})
_RELAY_STATES = frozenset({"connected", "disconnected", "armed"})


def _one_of(value: Any, allowed: frozenset[str]) -> bool:
    return isinstance(value, str) and value in allowed


def decode_events(raw: bytes, *, topic_meter: str) -> Decoded:
    """Decode ``{prefix}/{meter}/events``; unknown codes are kept (the code is data) but reported as issues."""
    doc, bad = load_json(raw, topic_meter)
    if bad is not None:
        return bad
    if not isinstance(doc, dict) or not isinstance(doc.get("events"), list):
        return reject("schema", "expected an object with an 'events' list", topic_meter, raw)
    meter = doc.get("meter", topic_meter)
    if meter != topic_meter:
        return reject(
            "meter_mismatch", f"payload meter {meter!r} on the topic of meter {topic_meter!r}", topic_meter, raw
        )
    events: list[MeterEvent] = []
    issues: list[Issue] = []
    for i, e in enumerate(doc["events"]):
        if not isinstance(e, dict) or not isinstance(e.get("code"), str) or not e["code"]:
            issues.append(Issue("schema", "an event needs a 'code' string", topic_meter, raw, {"index": i}))
            continue
        t = parse_ts(e.get("ts"))
        if t is None:
            issues.append(Issue("bad_ts", f"event time {e.get('ts')!r}", topic_meter, raw, {"index": i}))
            continue
        detail = e.get("detail") or {}
        if not isinstance(detail, dict):
            detail = {"value": detail}
        if e["code"] not in EVENT_CODES:
            issues.append(Issue("unknown_event", f"event code {e['code']!r}", topic_meter, raw, {"index": i}))
            continue
        events.append(MeterEvent(topic_meter, t, e["code"], detail))
    return Decoded(events=tuple(events), issues=tuple(issues))


def decode_status(raw: bytes, *, topic_meter: str, received_ts: int) -> Decoded:
    """Decode ``{prefix}/{meter}/status``; a last will usually has no time, so ``received_ts`` stands in.

    An empty payload (a cleared retained message) yields nothing and no issue.
    """
    if not raw.strip():
        return Decoded()
    plain = raw.strip().lower()
    if plain in (b"online", b"offline"):  # a bare word, as Tasmota and many firmwares send as their last will
        raw_state = plain.decode()
        return Decoded(
            events=(MeterEvent(topic_meter, received_ts, raw_state, {"status": raw_state}),),
            state=raw_state,
            state_ts=received_ts,
        )
    doc, bad = load_json(raw, topic_meter)
    if bad is not None:
        return bad
    if isinstance(doc, str):
        doc = {"state": doc}
    if not isinstance(doc, dict) or not _one_of(doc.get("state"), _STATES):
        return reject("schema", "expected {'state': 'online'|'offline'}", topic_meter, raw)
    t = received_ts if doc.get("ts") is None else parse_ts(doc.get("ts"))
    if t is None:
        return reject("bad_ts", f"status time {doc.get('ts')!r}", topic_meter, raw)
    event = MeterEvent(topic_meter, t, doc["state"], {"status": doc["state"]})
    return Decoded(events=(event,), state=doc["state"], state_ts=t)


def decode_cmd_result(raw: bytes, *, topic_meter: str, received_ts: int) -> Decoded:
    """Decode ``{prefix}/{meter}/cmd/result``; returned as a ``cmd_result`` event and a :class:`CommandResult`."""
    doc, bad = load_json(raw, topic_meter)
    if bad is not None:
        return bad
    if not isinstance(doc, dict) or not isinstance(doc.get("id"), str) or not _one_of(doc.get("status"), _CMD_STATUSES):
        return reject("schema", "expected {'id': UUID, 'status': 'ok|rejected|failed', 'relay'}", topic_meter, raw)
    relay = doc.get("relay")
    if relay is not None and not _one_of(relay, _RELAY_STATES):
        return reject("schema", f"unknown relay state {relay!r}", topic_meter, raw)
    result = CommandResult(topic_meter, doc["id"], doc["status"], relay)
    detail = {"id": result.id, "status": result.status, "relay": relay}
    return Decoded(events=(MeterEvent(topic_meter, received_ts, "cmd_result", detail),), command=result)
