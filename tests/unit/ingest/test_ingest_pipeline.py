"""Messages to one prepared batch (pure), and the metrics text."""

from __future__ import annotations

import json

from ingest.batching import BatchBuilder, Message
from ingest.metrics import IngestMetrics, render_metrics

T0 = "2026-11-01T00:15:00Z"


def readings(meter: str, values: list[float]) -> bytes:
    return json.dumps(
        {"meter": meter, "readings": [{"obis": "1-0:1.29.0", "ts": T0, "value": v, "unit": "Wh"} for v in values]}
    ).encode()


def test_builder_groups_rows_events_states_and_rejects() -> None:
    b = BatchBuilder(prefix="p", tasmota_prefix="p/tele")
    b.add(Message("p/M1/readings", readings("M1", [1.0, 2.0]), 10.0))
    b.add(Message("p/M2/readings", readings("M1", [3.0]), 11.0))  # forged
    b.add(Message("p/M2/readings", b"nope", 12.0))
    b.add(Message("p/M3/status", b'{"state": "online", "ts": "2026-11-01T00:00:00Z"}', 13.0))
    b.add(Message("p/M3/status", b'{"state": "offline", "ts": "2026-10-31T00:00:00Z"}', 14.0))  # older: ignored
    b.add(Message("p/M4/events", b'{"events": [{"ts": "%s", "code": "tamper"}]}' % T0.encode(), 15.0))
    b.add(Message("p/tele/T1/SENSOR", b'{"Time": "2026-11-01T00:15:00", "ENERGY": {"Total": 1.5}}', 16.0))
    b.add(Message("elsewhere/x", b"{}", 17.0))
    assert b.readings == 3 and len(b) == 8
    p = b.take()
    assert len(b) == 0
    batch, rows = p.batch()
    assert batch.meter.tolist() == ["T1", "M1", "M1"]  # per-message batches first, then the column rows
    assert rows.tolist() == [6, 0, 0]
    assert batch.value.tolist() == [1500.0, 1.0, 2.0]
    assert [(q.reason, q.meter, q.readings) for q in p.quarantine] == [
        ("meter_mismatch", "M2", 1),
        ("not_json", "M2", 0),
        ("unknown_topic", None, 0),
    ]
    assert p.states == {"M3": ("online", 1793491200)}
    assert [(i, e.meter, e.code) for i, e in p.events] == [
        (3, "M3", "online"),
        (4, "M3", "offline"),
        (5, "M4", "tamper"),
    ]
    assert set(p.seen) == {"M1", "M3", "M4", "T1"}  # a rejected payload does not count as the meter being seen


def test_metrics_text_and_health() -> None:
    m = IngestMetrics()
    m.add(readings_stored=5, messages_received=2)
    m.count_reason("quarantined_messages", "not_json")
    m.observe_lag([0.02, 0.3, 100.0])
    text = render_metrics(m)
    assert "amiflow_ingest_readings_stored_total 5" in text
    assert 'amiflow_ingest_quarantined_messages_total{reason="not_json"} 1' in text
    assert 'amiflow_ingest_lag_seconds_bucket{le="0.025"} 1' in text
    assert 'amiflow_ingest_lag_seconds_bucket{le="+Inf"} 3' in text and "amiflow_ingest_lag_seconds_count 3" in text
    assert m.health()[0] is False  # not connected
    m.mqtt_connected = True
    assert m.health()[0] is True
    m.spool_full = True
    assert m.health() == (False, m.health()[1]) and m.health()[1]["status"] == "degraded"
    assert m.lag_percentiles(50) == [0.3]
