"""Decoders of the MQTT payloads amiflow accepts (CONTRACT.md, "MQTT"): pure, never raising on bad input.

Topics (``{prefix}`` is ``ami/v1`` by default):

================================  ===========================================================================
``{prefix}/{meter}/readings``     ``{"meter", "seq", "readings": [{"obis", "ts", "value", "unit"}, ...]}``
``{prefix}/{meter}/events``       ``{"meter", "events": [{"ts", "code", "detail"}, ...]}``
``{prefix}/{meter}/status``       ``{"state": "online|offline", "ts"}`` (retained; the device's last will)
``{prefix}/{meter}/cmd/result``   ``{"id", "status": "ok|rejected|failed", "relay"}``
``{prefix}/{meter}/p1``           a DSMR P1 telegram as text (decoded by :func:`protocols.p1.parse_telegram`)
``tele/{device}/SENSOR``          Tasmota telemetry JSON with an ``ENERGY`` object
``tele/{device}/LWT``             Tasmota's last will: ``Online`` / ``Offline``
================================  ===========================================================================

Every decoder returns a :class:`Decoded`: the readings as a columnar :class:`~amiflow.types.ReadingBatch` in base
units (Wh, W, V, A, varh), event rows, and :class:`~amiflow.types.Issue` records with stable codes. A payload-level
issue (``not_json``, ``schema``, ``meter_mismatch``, ``too_large``) rejects the whole payload; a reading-level issue
(``bad_obis``, ``bad_ts``, ``unknown_unit``, ``unit_mismatch``, ``not_finite``, ``schema``) rejects that reading only
and carries its index in ``extra["index"]``. Timestamps are epoch seconds (UTC); ISO 8601 strings must carry an
offset or ``Z``. No clock is read here: callers pass ``received_ts`` where a payload may omit its time.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np

from amiflow.types import (
    ChannelKind,
    Issue,
    ReadingBatch,
    Source,
    channel_kind,
    normalize_unit,
    parse_obis,
)

__all__ = [
    "EVENT_CODES",
    "MAX_PAYLOAD_BYTES",
    "CommandResult",
    "Columns",
    "Decoded",
    "MeterEvent",
    "TopicRef",
    "decode",
    "decode_cmd_result",
    "decode_events",
    "decode_p1",
    "decode_reading_rows",
    "decode_readings",
    "decode_status",
    "decode_tasmota",
    "parse_topic",
    "topic_filters",
]

MAX_PAYLOAD_BYTES = 4 << 20  # a meter-year of 15-minute intervals is ~1.6 MB; anything bigger is not a meter
EVENT_CODES = frozenset({"power_down", "power_up", "tamper", "relay_open", "relay_closed", "clock_adjusted"})
_STATES = frozenset({"online", "offline"})
_CMD_STATUSES = frozenset({"ok", "rejected", "failed"})
_RELAY_STATES = frozenset({"connected", "disconnected", "armed"})
# base unit each channel kind may carry, by OBIS quantity group C (IEC 62056-6-1): energy channels need Wh/varh
_ENERGY_KINDS = (ChannelKind.INTERVAL, ChannelKind.REGISTER)


@dataclass(frozen=True, slots=True)
class TopicRef:
    """What a topic names: ``kind`` is readings, events, status, cmd_result, p1 or tasmota."""

    kind: str
    meter: str


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


# -- helpers ---------------------------------------------------------------------------------------------------
def _reject(code: str, detail: str, meter: str | None, raw: bytes) -> Decoded:
    return Decoded(issues=(Issue(code, detail, meter=meter, raw=raw),), rejected=True)


def _load(raw: bytes, meter: str | None) -> tuple[Any, Decoded | None]:
    if len(raw) > MAX_PAYLOAD_BYTES:
        return None, _reject("too_large", f"payload of {len(raw)} bytes exceeds {MAX_PAYLOAD_BYTES}", meter, raw)
    try:
        return json.loads(raw), None
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        return None, _reject("not_json", f"payload is not JSON: {exc}", meter, raw)


_TS_CACHE: dict[str, int] = {}


def parse_ts(value: Any) -> int | None:
    """ISO 8601 with an offset (or ``Z``), or epoch seconds as a number, to epoch seconds; None if invalid."""
    if isinstance(value, str):
        cached = _TS_CACHE.get(value)
        if cached is not None:
            return cached
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            return None
        if dt.tzinfo is None or dt.year < 1971 or dt.year > 9000:
            return None
        out = math.floor(dt.timestamp())
        if len(_TS_CACHE) > 200_000:  # timestamps repeat across a fleet's messages; the cache stays bounded
            _TS_CACHE.clear()
        _TS_CACHE[value] = out
        return out
    numeric = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if numeric and 31_536_000 <= value < 253_402_300_800:  # 1971 .. 9999
        return int(value)
    return None


_OBIS_CACHE: dict[str, tuple[str, ChannelKind] | None] = {}


def _obis(code: Any) -> tuple[str, ChannelKind] | None:
    if not isinstance(code, str):
        return None
    hit = _OBIS_CACHE.get(code, ...)
    if hit is not ...:
        return hit
    try:
        parsed = parse_obis(code)
        out: tuple[str, ChannelKind] | None = (str(parsed), channel_kind(parsed))
    except ValueError:
        out = None
    if len(_OBIS_CACHE) < 10_000:
        _OBIS_CACHE[code] = out
    return out


def _unit(unit: Any) -> tuple[str, float] | None:
    if not isinstance(unit, str):
        return None
    try:
        return normalize_unit(unit)
    except ValueError:
        return None


def _one_of(value: Any, allowed: frozenset[str]) -> bool:
    return isinstance(value, str) and value in allowed


def _unit_fits(kind: ChannelKind, base: str) -> bool:
    return kind not in _ENERGY_KINDS or base in ("Wh", "varh", "VAh")


# -- readings ----------------------------------------------------------------------------------------------------
def decode_readings(raw: bytes, *, topic_meter: str, source: Source = Source.MQTT) -> Decoded:
    """Decode ``{prefix}/{meter}/readings``; the payload's ``meter`` must equal the topic's."""
    d, (obis, units, ts, values) = decode_reading_rows(raw, topic_meter=topic_meter)
    if not obis:
        return d
    n = len(obis)
    batch = ReadingBatch(
        meter=np.full(n, topic_meter, dtype=object),
        obis=np.array(obis, dtype=object),
        ts=np.array(ts, dtype=np.int64),
        value=np.array(values, dtype=np.float64),
        quality=np.zeros(n, dtype=np.int32),
        source=np.full(n, int(source), dtype=np.int16),
        unit=np.array(units, dtype=object),
    )
    return Decoded(batch=batch, issues=d.issues, seq=d.seq)


def decode_reading_rows(raw: bytes, *, topic_meter: str) -> tuple[Decoded, Columns]:
    """The column form of :func:`decode_readings` for callers that batch many messages: (the result without its
    readings, the readings as lists (obis, base unit, ts, value)). Building numpy arrays once per batch instead
    of once per message is what makes one-reading messages cheap."""
    doc, bad = _load(raw, topic_meter)
    if bad is not None:
        return bad, _no_columns()
    if not isinstance(doc, dict):
        return _reject("schema", "payload is not a JSON object", topic_meter, raw), _no_columns()
    meter = doc.get("meter")
    if not isinstance(meter, str) or not meter:
        return _reject("schema", "missing or non-string 'meter'", topic_meter, raw), _no_columns()
    readings = doc.get("readings")
    if meter != topic_meter:
        claimed = len(readings) if isinstance(readings, list) else 0
        issue = Issue(
            "meter_mismatch",
            f"payload meter {meter!r} on the topic of meter {topic_meter!r}",
            topic_meter,
            raw,
            {"readings": claimed},
        )
        return Decoded(issues=(issue,), rejected=True), _no_columns()
    if not isinstance(readings, list):
        return _reject("schema", "missing or non-list 'readings'", meter, raw), _no_columns()
    seq = doc.get("seq")
    if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool)):
        return _reject("schema", "'seq' must be an integer", meter, raw), _no_columns()
    obis_col: list[str] = []
    unit_col: list[str] = []
    ts_col: list[int] = []
    value_col: list[float] = []
    issues: list[Issue] = []
    channel = _channel
    for i, r in enumerate(readings):
        # the common case in a few dict lookups; anything unusual takes the careful path for its issue code
        if type(r) is dict:
            ch = channel(r.get("obis"), r.get("unit"))
            ts_raw = r.get("ts")
            t = _TS_CACHE.get(ts_raw) if type(ts_raw) is str else None
            value = r.get("value")
            if (
                ch is not None
                and t is not None
                and (type(value) is float or (type(value) is int and -_BIG < value < _BIG))
            ):
                v = value * ch[2]
                if v - v == 0.0:  # finite
                    obis_col.append(ch[0])
                    unit_col.append(ch[1])
                    ts_col.append(t)
                    value_col.append(float(v))
                    continue
        row = _reading(r)
        if isinstance(row, Issue):
            issues.append(Issue(row.code, row.detail, meter=meter, raw=raw, extra={"index": i}))
        else:
            obis_col.append(row[0])
            unit_col.append(row[1])
            ts_col.append(row[2])
            value_col.append(row[3])
    return Decoded(issues=tuple(issues), seq=seq), (obis_col, unit_col, ts_col, value_col)


Columns = tuple[list[str], list[str], list[int], list[float]]
_BIG = 1 << 53


def _no_columns() -> Columns:
    return [], [], [], []


_CHANNELS: dict[tuple[str, str], tuple[str, str, float] | None] = {}


def _channel(obis: Any, unit: Any) -> tuple[str, str, float] | None:
    """(normalized OBIS, base unit, factor) for a valid, consistent pair; None otherwise (cached)."""
    if type(obis) is not str or type(unit) is not str:
        return None
    key = (obis, unit)
    try:
        return _CHANNELS[key]
    except KeyError:
        pass
    code, u = _obis(obis), _unit(unit)
    out = (code[0], u[0], u[1]) if code is not None and u is not None and _unit_fits(code[1], u[0]) else None
    if len(_CHANNELS) < 10_000:
        _CHANNELS[key] = out
    return out


def _reading(r: Any) -> tuple[str, str, int, float] | Issue:
    if not isinstance(r, dict):
        return Issue("schema", "a reading is not a JSON object")
    code = _obis(r.get("obis"))
    if code is None:
        return Issue("bad_obis", f"not an OBIS code: {r.get('obis')!r}")
    t = parse_ts(r.get("ts"))
    if t is None:
        return Issue("bad_ts", f"not an ISO 8601 time with offset: {r.get('ts')!r}")
    value = r.get("value")
    if not isinstance(value, int | float) or isinstance(value, bool):
        return Issue("schema", f"value of {code[0]} is not a number: {value!r}")
    unit = _unit(r.get("unit", ""))
    if unit is None:
        return Issue("unknown_unit", f"unknown unit {r.get('unit')!r} for {code[0]}")
    if not _unit_fits(code[1], unit[0]):
        return Issue("unit_mismatch", f"unit {r.get('unit')!r} on energy channel {code[0]}")
    try:
        v = float(value) * unit[1]
    except OverflowError:
        v = math.inf
    if not math.isfinite(v):
        return Issue("not_finite", f"value of {code[0]} is not finite: {value!r}")
    return code[0], unit[0], t, v


# -- events, status, command results -------------------------------------------------------------------------------
def decode_events(raw: bytes, *, topic_meter: str) -> Decoded:
    """Decode ``{prefix}/{meter}/events``; unknown codes are kept (the code is data) but reported as issues."""
    doc, bad = _load(raw, topic_meter)
    if bad is not None:
        return bad
    if not isinstance(doc, dict) or not isinstance(doc.get("events"), list):
        return _reject("schema", "expected an object with an 'events' list", topic_meter, raw)
    meter = doc.get("meter", topic_meter)
    if meter != topic_meter:
        return _reject(
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
    doc, bad = _load(raw, topic_meter)
    if bad is not None:
        return bad
    if isinstance(doc, str):
        doc = {"state": doc}
    if not isinstance(doc, dict) or not _one_of(doc.get("state"), _STATES):
        return _reject("schema", "expected {'state': 'online'|'offline'}", topic_meter, raw)
    t = received_ts if doc.get("ts") is None else parse_ts(doc.get("ts"))
    if t is None:
        return _reject("bad_ts", f"status time {doc.get('ts')!r}", topic_meter, raw)
    event = MeterEvent(topic_meter, t, doc["state"], {"status": doc["state"]})
    return Decoded(events=(event,), state=doc["state"], state_ts=t)


def decode_cmd_result(raw: bytes, *, topic_meter: str, received_ts: int) -> Decoded:
    """Decode ``{prefix}/{meter}/cmd/result``; returned as a ``cmd_result`` event and a :class:`CommandResult`."""
    doc, bad = _load(raw, topic_meter)
    if bad is not None:
        return bad
    if not isinstance(doc, dict) or not isinstance(doc.get("id"), str) or not _one_of(doc.get("status"), _CMD_STATUSES):
        return _reject("schema", "expected {'id': UUID, 'status': 'ok|rejected|failed', 'relay'}", topic_meter, raw)
    relay = doc.get("relay")
    if relay is not None and not _one_of(relay, _RELAY_STATES):
        return _reject("schema", f"unknown relay state {relay!r}", topic_meter, raw)
    result = CommandResult(topic_meter, doc["id"], doc["status"], relay)
    detail = {"id": result.id, "status": result.status, "relay": relay}
    return Decoded(events=(MeterEvent(topic_meter, received_ts, "cmd_result", detail),), command=result)


# -- Tasmota ---------------------------------------------------------------------------------------------------------
# ENERGY key -> (OBIS, wire unit, per-phase OBIS codes for L1..L3 when the value is a list)
_TASMOTA: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "Total": ("1-0:1.8.0", "kWh", ()),
    "ExportActive": ("1-0:2.8.0", "kWh", ()),
    "Power": ("1-0:1.7.0", "W", ("1-0:21.7.0", "1-0:41.7.0", "1-0:61.7.0")),
    "ReactivePower": ("1-0:3.7.0", "var", ()),
    "ApparentPower": ("1-0:9.7.0", "VA", ()),
    "Voltage": ("1-0:32.7.0", "V", ("1-0:32.7.0", "1-0:52.7.0", "1-0:72.7.0")),
    "Current": ("1-0:31.7.0", "A", ("1-0:31.7.0", "1-0:51.7.0", "1-0:71.7.0")),
}


def decode_tasmota(raw: bytes, *, device: str, utc_offset_s: int = 0) -> Decoded:
    """Decode Tasmota ``tele/{device}/SENSOR``; the device name is the meter id.

    Tasmota writes ``Time`` in the device's local time without an offset: ``utc_offset_s`` says what that offset
    is (the device's ``Timezone``; 0 when it runs on UTC). Per-phase lists of totals are summed.
    """
    doc, bad = _load(raw, device)
    if bad is not None:
        return bad
    if not isinstance(doc, dict) or not isinstance(doc.get("ENERGY"), dict):
        return _reject("schema", "expected an object with an 'ENERGY' object", device, raw)
    t_raw = doc.get("Time")
    t = None
    if isinstance(t_raw, str):
        try:
            dt = datetime.fromisoformat(t_raw)
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=timezone(timedelta(seconds=utc_offset_s)))
            t = math.floor(dt.astimezone(UTC).timestamp())
        except ValueError:
            t = None
    if t is None:
        return _reject("bad_ts", f"Tasmota 'Time' {t_raw!r}", device, raw)
    obis: list[str] = []
    units: list[str] = []
    values: list[float] = []
    issues: list[Issue] = []
    for key, (code, unit, phases) in _TASMOTA.items():
        v = doc["ENERGY"].get(key)
        if v is None:
            continue
        items: list[tuple[str, Any]]
        if isinstance(v, list):
            items = [(code, sum(v))] if not phases and _all_numbers(v) else list(zip(phases, v, strict=False))
        else:
            items = [(code, v)]
        base, factor = normalize_unit(unit)
        for c, x in items:
            if not isinstance(x, int | float) or isinstance(x, bool) or not math.isfinite(x):
                issues.append(Issue("not_finite" if isinstance(x, float) else "schema", f"{key}={x!r}", device, raw))
                continue
            obis.append(c)
            units.append(base)
            values.append(float(x) * factor)
    batch = ReadingBatch.from_columns(
        device,
        np.array(obis, dtype=object),
        np.full(len(obis), t),
        values,
        unit=np.array(units, dtype=object),
        source=int(Source.TASMOTA),
    )
    return Decoded(batch=batch, issues=tuple(issues))


def _all_numbers(v: list[Any]) -> bool:
    return all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)


# -- DSMR P1 ----------------------------------------------------------------------------------------------------
def decode_p1(raw: bytes, *, topic_meter: str) -> Decoded:
    """Decode a DSMR P1 telegram published as text on ``{prefix}/{meter}/p1`` (CRC-checked by protocols.p1)."""
    if len(raw) > MAX_PAYLOAD_BYTES:
        return _reject("too_large", f"telegram of {len(raw)} bytes", topic_meter, raw)
    try:
        from protocols.p1 import parse_telegram  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return _reject("unsupported", "the DSMR P1 decoder (protocols.p1) is not installed", topic_meter, raw)
    try:
        batch, issues = parse_telegram(raw, meter=topic_meter)
    except Exception as exc:  # a decoder bug must not crash the worker: the telegram is quarantined instead
        return _reject("decoder_error", f"P1 decoder failed: {type(exc).__name__}: {exc}", topic_meter, raw)
    out = tuple(Issue(i.code, i.detail, meter=topic_meter, raw=raw, extra=i.extra) for i in issues)
    if len(batch) and (batch.meter != topic_meter).any():
        return _reject("meter_mismatch", "the telegram's equipment id names another meter", topic_meter, raw)
    return Decoded(batch=batch, issues=out, rejected=not len(batch) and bool(out))


def decode(topic: str, raw: bytes, *, prefix: str = "ami/v1", received_ts: int) -> tuple[TopicRef | None, Decoded]:
    """Dispatch on the topic; an unknown topic gives (None, a rejected ``unknown_topic`` result)."""
    ref = parse_topic(topic, prefix)
    if ref is None:
        return None, _reject("unknown_topic", f"topic {topic!r} is not ingested", None, raw)
    if ref.kind == "readings":
        return ref, decode_readings(raw, topic_meter=ref.meter)
    if ref.kind == "events":
        return ref, decode_events(raw, topic_meter=ref.meter)
    if ref.kind == "status":
        return ref, decode_status(raw, topic_meter=ref.meter, received_ts=received_ts)
    if ref.kind == "cmd_result":
        return ref, decode_cmd_result(raw, topic_meter=ref.meter, received_ts=received_ts)
    if ref.kind == "p1":
        return ref, decode_p1(raw, topic_meter=ref.meter)
    return ref, decode_tasmota(raw, device=ref.meter)
