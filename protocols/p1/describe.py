"""A P1 capture described for an engineer (``amiflow decode p1``): every telegram in it, as a JSON-able dict.

The result has the readings payload shape: ``meter``, ``readings`` [{``obis``, ``ts``, ``value``, ``unit``}] (base
units, ``ts`` ISO 8601 UTC), ``frames`` (one per telegram: header, version, CRC verdict, where the meter id and the
clock came from, counters, states, texts, power failures, demand peaks, M-Bus devices) and ``issues`` ({``code``,
``detail``, ``meter``, and ``severity: "info"`` for the informational ones, see
:func:`~protocols.p1.telegram.is_informational`). A telegram that began and never ended is a ``truncated`` issue.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from amiflow.types import Issue

from .stream import NEED_DATA, P1Splitter
from .telegram import P1Reading, P1Telegram, decode_telegram, is_informational

__all__ = ["describe_capture"]


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _reading(r: P1Reading) -> dict[str, Any]:
    return {"obis": r.obis, "ts": _iso(r.ts), "value": r.value, "unit": r.unit}


def _issues(issues: Sequence[Issue]) -> list[dict[str, Any]]:
    out = []
    for i in issues:
        item: dict[str, Any] = {"code": i.code, "detail": i.detail, **({"meter": i.meter} if i.meter else {})}
        if is_informational(i):
            item["severity"] = "info"
        out.append(item)
    return out


def _frame(raw: bytes, t: P1Telegram) -> dict[str, Any]:
    header = t.header or (raw[1 : raw.find(b"\r")].decode("ascii", "replace") if b"\r" in raw else "")
    frame: dict[str, Any] = {"kind": "p1", "bytes": len(raw), "header": header, "readings": len(t.readings)}
    if not t.objects:
        return frame
    frame.update(version=t.version, crc=t.crc, meter=t.meter, meter_id_from=t.meter_id_from, clock=t.clock)
    if t.ts is not None:
        frame["ts"] = _iso(t.ts)
    frame.update(counters=dict(t.counters), states=dict(t.states), texts=dict(t.texts))
    frame["power_failures"] = [{"end": _iso(p.end_ts), "duration_s": p.duration_s} for p in t.power_failures]
    frame["demand_peaks"] = [
        {"month": _iso(p.month_ts), "at": _iso(p.at_ts), "demand_w": p.demand_w} for p in t.demand_peaks
    ]
    frame["mbus"] = [
        {
            "channel": d.channel,
            "device_type": d.device_type,
            "kind": d.kind,
            "equipment_id": d.equipment_id,
            "valve": d.valve,
            "breaker": d.breaker,
            **({"value": d.reading.value, "unit": d.reading.unit, "ts": _iso(d.reading.ts)} if d.reading else {}),
        }
        for d in t.mbus
    ]
    return frame


def describe_capture(data: bytes, *, received_ts: int | None = None) -> dict[str, Any]:
    """Every telegram in ``data`` (a capture of a P1 port: telegrams, maybe with noise between them), decoded.

    ``received_ts`` stamps the readings of telegrams without a clock line (DSMR 2.2/3.0).
    """
    splitter = P1Splitter()
    splitter.receive_data(data if data.endswith(b"\n") else data + b"\r\n")
    frames: list[dict[str, Any]] = []
    readings: list[dict[str, Any]] = []
    issues: list[Issue] = []
    meter: str | None = None
    while (raw := splitter.next_event()) is not NEED_DATA:
        telegram = decode_telegram(raw, received_ts=received_ts)
        issues += telegram.issues
        frames.append(_frame(raw, telegram))
        if telegram.readings:
            meter = meter or telegram.meter
            readings += [_reading(r) for r in telegram.readings]
    truncated = splitter.truncated + (1 if splitter.pending else 0)
    if truncated:
        detail = f"{truncated} telegram(s) began with '/' and never reached their '!' and CRC line"
        issues.append(Issue("truncated", detail))
    elif not frames:
        issues.append(Issue("no_telegram", "no '/' ... '!' telegram in the input"))
    return {"meter": meter, "readings": readings, "frames": frames, "issues": _issues(issues)}
