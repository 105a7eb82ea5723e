"""The MQTT payload decoders: contract payloads decode to base units, every bad input becomes an issue code."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from amiflow.types import Source
from protocols.mqtt_payloads import (
    decode,
    decode_cmd_result,
    decode_events,
    decode_readings,
    decode_status,
    decode_tasmota,
    parse_topic,
    parse_ts,
)

T0 = "2026-11-01T00:15:00Z"
TS0 = 1793492100


def payload(readings: list[object], meter: str = "M1", **extra: object) -> bytes:
    return json.dumps({"meter": meter, "seq": 7, "readings": readings, **extra}).encode()


def test_contract_example_decodes_to_base_units() -> None:
    d = decode_readings(
        payload(
            [
                {"obis": "1-0:1.29.0", "ts": T0, "value": 0.231, "unit": "kWh"},
                {"obis": "1.8.0", "ts": "2026-11-01T01:15:00+01:00", "value": 1234.5, "unit": "kWh"},
                {"obis": "1-0:32.7.0", "ts": T0, "value": 231, "unit": "V"},
            ]
        ),
        topic_meter="M1",
    )
    assert not d.issues and not d.rejected and d.seq == 7
    assert d.batch.obis.tolist() == ["1-0:1.29.0", "1-0:1.8.0", "1-0:32.7.0"]
    assert d.batch.ts.tolist() == [TS0, TS0, TS0]
    np.testing.assert_allclose(d.batch.value, [231.0, 1_234_500.0, 231.0])
    assert d.batch.unit.tolist() == ["Wh", "Wh", "V"]
    assert set(d.batch.source.tolist()) == {int(Source.MQTT)} and set(d.batch.meter.tolist()) == {"M1"}


def test_bad_readings_are_dropped_one_by_one_with_their_index() -> None:
    good = {"obis": "1-0:1.29.0", "ts": T0, "value": 1, "unit": "Wh"}
    bad = [
        ({"obis": "1-0:1.29.300", "ts": T0, "value": 1, "unit": "Wh"}, "bad_obis"),
        ({"obis": "1-0:1.29.0", "ts": "2026-11-01T00:15:00", "value": 1, "unit": "Wh"}, "bad_ts"),
        ({"obis": "1-0:1.29.0", "ts": "yesterday", "value": 1, "unit": "Wh"}, "bad_ts"),
        ({"obis": "1-0:1.29.0", "ts": T0, "value": 1, "unit": "furlong"}, "unknown_unit"),
        ({"obis": "1-0:1.29.0", "ts": T0, "value": 1, "unit": "W"}, "unit_mismatch"),
        ({"obis": "1-0:1.29.0", "ts": T0, "value": "1", "unit": "Wh"}, "schema"),
        ({"obis": "1-0:1.29.0", "ts": T0, "value": True, "unit": "Wh"}, "schema"),
        ("not an object", "schema"),
        ({"obis": "1-0:1.29.0", "ts": T0, "value": 1e308, "unit": "MWh"}, "not_finite"),
        ({"obis": "1-0:1.29.0", "ts": T0, "value": 10**400, "unit": "Wh"}, "not_finite"),
    ]
    d = decode_readings(payload([good] + [b for b, _ in bad]), topic_meter="M1")
    assert len(d.batch) == 1 and not d.rejected
    assert [(i.code, i.extra["index"]) for i in d.issues] == [(code, k + 1) for k, (_, code) in enumerate(bad)]
    nan = decode_readings(
        b'{"meter":"M1","readings":[{"obis":"1.8.0","ts":"%s","value":NaN,"unit":"Wh"}]}' % T0.encode(),
        topic_meter="M1",
    )
    assert [i.code for i in nan.issues] == ["not_finite"]


def test_whole_payload_rejects() -> None:
    cases = [
        (b"\xff\xfe", "not_json"),
        (b"{", "not_json"),
        (b"[]", "schema"),
        (b'{"readings": []}', "schema"),
        (b'{"meter": "M1", "readings": {}}', "schema"),
        (b'{"meter": "M1", "seq": "x", "readings": []}', "schema"),
        (payload([], meter="M2"), "meter_mismatch"),
        (b"[" * 100_000 + b"]" * 100_000, "not_json"),
    ]
    for raw, code in cases:
        d = decode_readings(raw, topic_meter="M1")
        assert d.rejected and [i.code for i in d.issues] == [code], raw[:40]
        assert d.issues[0].raw == raw and len(d.batch) == 0
    forged = decode_readings(
        payload([{"obis": "1.8.0", "ts": T0, "value": 1, "unit": "Wh"}], meter="M2"), topic_meter="M1"
    )
    assert forged.issues[0].meter == "M1" and forged.issues[0].extra == {"readings": 1}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_never_raises(raw: bytes) -> None:
    for topic in (
        "ami/v1/M1/readings",
        "ami/v1/M1/events",
        "ami/v1/M1/status",
        "ami/v1/M1/cmd/result",
        "tele/d/SENSOR",
    ):
        ref, d = decode(topic, raw, received_ts=TS0)
        assert ref is not None
        assert d.rejected or d.issues or len(d.batch) or d.events or d.state is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda c: (
        st.lists(c, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "meter",
                    "readings",
                    "obis",
                    "ts",
                    "value",
                    "unit",
                    "seq",
                    "events",
                    "code",
                    "state",
                    "ENERGY",
                    "Time",
                    "Total",
                    "Power",
                ]
            ),
            c,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_never_raises(doc: object) -> None:
    raw = json.dumps(doc, allow_nan=True).encode()
    for topic in (
        "ami/v1/M1/readings",
        "ami/v1/M1/events",
        "ami/v1/M1/status",
        "ami/v1/M1/cmd/result",
        "tele/M1/SENSOR",
    ):
        _, d = decode(topic, raw, received_ts=TS0)
        assert all(math.isfinite(v) for v in d.batch.value.tolist())


def test_events_status_and_command_results() -> None:
    ev = decode_events(
        json.dumps(
            {
                "meter": "M1",
                "events": [
                    {"ts": T0, "code": "power_down", "detail": {"phase": 1}},
                    {"ts": T0, "code": "exploded"},
                    {"code": "tamper"},
                ],
            }
        ).encode(),
        topic_meter="M1",
    )
    assert [(e.code, e.ts, e.detail) for e in ev.events] == [("power_down", TS0, {"phase": 1})]
    assert [i.code for i in ev.issues] == ["unknown_event", "bad_ts"]
    st_ = decode_status(b'{"state": "offline"}', topic_meter="M1", received_ts=123)
    assert (st_.state, st_.state_ts) == ("offline", 123)
    assert decode_status(b"", topic_meter="M1", received_ts=1).events == ()
    assert decode_status(b"Offline", topic_meter="M1", received_ts=9).state == "offline"
    ref, lwt = decode("tele/plug-7/LWT", b"Online", received_ts=9)
    assert ref is not None and (ref.kind, ref.meter, lwt.state, lwt.state_ts) == ("status", "plug-7", "online", 9)
    assert decode_status(b'{"state": "asleep"}', topic_meter="M1", received_ts=1).issues[0].code == "schema"
    cmd = decode_cmd_result(b'{"id": "u-1", "status": "ok", "relay": "disconnected"}', topic_meter="M1", received_ts=5)
    assert cmd.command is not None and (cmd.command.status, cmd.command.relay) == ("ok", "disconnected")
    assert cmd.events[0].code == "cmd_result"


def test_tasmota_energy() -> None:
    raw = json.dumps(
        {
            "Time": "2026-11-01T01:15:00",
            "ENERGY": {"Total": 12.5, "Power": 230, "Voltage": [230, 231, 229], "Current": "bad"},
        }
    ).encode()
    d = decode_tasmota(raw, device="tas-1", utc_offset_s=3600)
    assert d.batch.obis.tolist() == ["1-0:1.8.0", "1-0:1.7.0", "1-0:32.7.0", "1-0:52.7.0", "1-0:72.7.0"]
    assert d.batch.value.tolist() == [12500.0, 230.0, 230.0, 231.0, 229.0]
    assert set(d.batch.ts.tolist()) == {TS0} and set(d.batch.source.tolist()) == {int(Source.TASMOTA)}
    assert [i.code for i in d.issues] == ["schema"]
    assert decode_tasmota(b'{"ENERGY": {}}', device="t").issues[0].code == "bad_ts"


def test_topics_and_times() -> None:
    assert parse_topic("ami/v1/M1/readings") is not None
    assert parse_topic("ami/v1/M1/cmd/result").kind == "cmd_result"  # type: ignore[union-attr]
    assert parse_topic("ami/v1/M1/cmd") is None and parse_topic("other/M1/readings") is None
    assert parse_topic("x/y/M1/p1", "x/y").meter == "M1"  # type: ignore[union-attr]
    assert parse_ts("2026-11-01T00:15:00.999Z") == TS0 and parse_ts(TS0) == TS0
    assert parse_ts("2026-11-01T00:15:00") is None and parse_ts(True) is None and parse_ts(float("nan")) is None


def test_p1_goes_through_protocols_p1(monkeypatch: Any) -> None:
    import sys
    import types

    from amiflow.types import Issue, ReadingBatch
    from protocols.mqtt_payloads import decode_p1

    def parse_telegram(
        data: bytes, *, meter: str | None, received_ts: int | None = None
    ) -> tuple[ReadingBatch, list[Issue]]:
        if data == b"boom":
            raise RuntimeError("decoder bug")
        if data == b"bad crc":
            return ReadingBatch(), [Issue("crc", "CRC mismatch")]
        who = "OTHER" if data == b"other" else meter
        return ReadingBatch.from_columns(who, "1-0:1.8.1", [TS0], [1000.0], unit="Wh", source=int(Source.P1)), []

    fake = types.ModuleType("protocols.p1")
    fake.parse_telegram = parse_telegram  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "protocols.p1", fake)
    ok = decode_p1(b"/ISK5\r\n...!ABCD\r\n", topic_meter="E1")
    assert not ok.rejected and ok.batch.meter.tolist() == ["E1"] and ok.batch.source.tolist() == [int(Source.P1)]
    assert [i.code for i in decode_p1(b"bad crc", topic_meter="E1").issues] == ["crc"]
    assert decode_p1(b"bad crc", topic_meter="E1").rejected
    assert decode_p1(b"other", topic_meter="E1").issues[0].code == "meter_mismatch"
    assert decode_p1(b"boom", topic_meter="E1").issues[0].code == "decoder_error"
    monkeypatch.setitem(sys.modules, "protocols.p1", None)  # not installed
    assert decode_p1(b"x", topic_meter="E1").issues[0].code == "unsupported"
