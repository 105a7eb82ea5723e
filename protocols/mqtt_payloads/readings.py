"""``{prefix}/{meter}/readings``: ``{"meter", "seq", "readings": [{"obis", "ts", "value", "unit"}, ...]}``.

A reading-level issue (``bad_obis``, ``bad_ts``, ``unknown_unit``, ``unit_mismatch``, ``not_finite``, ``schema``)
drops that reading only and carries its index in ``extra["index"]``; the rest of the payload is kept.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from amiflow.types import Issue, ReadingBatch, Source

from .envelope import Decoded, load_json, reject
from .fields import TS_CACHE, obis_kind, parse_ts, unit_factor, unit_fits

__all__ = ["Columns", "decode_reading_rows", "decode_readings"]

Columns = tuple[list[str], list[str], list[int], list[float]]
_BIG = 1 << 53


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
    doc, bad = load_json(raw, topic_meter)
    if bad is not None:
        return bad, _no_columns()
    if not isinstance(doc, dict):
        return reject("schema", "payload is not a JSON object", topic_meter, raw), _no_columns()
    meter = doc.get("meter")
    if not isinstance(meter, str) or not meter:
        return reject("schema", "missing or non-string 'meter'", topic_meter, raw), _no_columns()
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
        return reject("schema", "missing or non-list 'readings'", meter, raw), _no_columns()
    seq = doc.get("seq")
    if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool)):
        return reject("schema", "'seq' must be an integer", meter, raw), _no_columns()
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
            t = TS_CACHE.get(ts_raw) if type(ts_raw) is str else None
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
    code, u = obis_kind(obis), unit_factor(unit)
    out = (code[0], u[0], u[1]) if code is not None and u is not None and unit_fits(code[1], u[0]) else None
    if len(_CHANNELS) < 10_000:
        _CHANNELS[key] = out
    return out


def _reading(r: Any) -> tuple[str, str, int, float] | Issue:
    if not isinstance(r, dict):
        return Issue("schema", "a reading is not a JSON object")
    code = obis_kind(r.get("obis"))
    if code is None:
        return Issue("bad_obis", f"not an OBIS code: {r.get('obis')!r}")
    t = parse_ts(r.get("ts"))
    if t is None:
        return Issue("bad_ts", f"not an ISO 8601 time with offset: {r.get('ts')!r}")
    value = r.get("value")
    if not isinstance(value, int | float) or isinstance(value, bool):
        return Issue("schema", f"value of {code[0]} is not a number: {value!r}")
    unit = unit_factor(r.get("unit", ""))
    if unit is None:
        return Issue("unknown_unit", f"unknown unit {r.get('unit')!r} for {code[0]}")
    if not unit_fits(code[1], unit[0]):
        return Issue("unit_mismatch", f"unit {r.get('unit')!r} on energy channel {code[0]}")
    try:
        v = float(value) * unit[1]
    except OverflowError:
        v = math.inf
    if not math.isfinite(v):
        return Issue("not_finite", f"value of {code[0]} is not finite: {value!r}")
    return code[0], unit[0], t, v
