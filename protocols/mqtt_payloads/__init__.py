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

from .envelope import MAX_PAYLOAD_BYTES, CommandResult, Decoded, MeterEvent
from .events import EVENT_CODES, decode_cmd_result, decode_events, decode_status
from .fields import parse_ts
from .p1_text import decode_p1
from .readings import Columns, decode_reading_rows, decode_readings
from .tasmota import decode_tasmota
from .topics import TopicRef, decode, parse_topic, topic_filters

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
    "parse_ts",
    "topic_filters",
]
