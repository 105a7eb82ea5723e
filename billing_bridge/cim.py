"""IEC 61968-9 style XML messages for the CIM sink (pure: payload in, deterministic bytes out).

Layout (IEC 61968-100 message envelope around IEC 61968-9 profiles)::

    <RequestMessage xmlns="http://iec.ch/TC57/2011/schema/message">
      <Header><Verb>created</Verb><Noun>MeterReadings|EndDeviceControls</Noun>
              <Source>amiflow</Source><MessageID>{idempotency key}</MessageID>
              <CorrelationID>{bill/notice id}</CorrelationID>
      </Header>
      <Payload> MeterReadings | EndDeviceControls </Payload>
    </RequestMessage>

A bill becomes MeterReadings: one MeterReading per meter of the bill, whose Readings are the bill determinants (every
numeric leaf of ``determinants``, ReadingType ``amiflow:determinant/<path>``, stamped at the period end), plus the
bill total and the estimated share. A ``disconnect_scheduled`` / ``disconnected`` / ``reconnected`` notice becomes an
EndDeviceControl per meter, typed by its IEC 61968-9 EndDeviceControlType code and with ``amiflow:<kind>/<action>``
as the reason. Other notices have no CIM profile here and are sent as JSON by the sink. The Header carries no clock:
retries are byte-identical.

EndDeviceControlType codes (IEC 61968-9:2013 Annex E, the EndDeviceEventType / EndDeviceControlType enumerations) are
``<EndDeviceType>.<EndDeviceDomain>.<EndDeviceSubdomain>.<EndDeviceEventOrAction>``; amiflow's relay controls are
those of an electric meter (type 3) on its remote connect/disconnect switch (domain 31, RCDSwitch), no subdomain (0):

    3.31.0.23  Disconnect      disconnect_scheduled (scheduled), disconnected (executed)
    3.31.0.18  Connect         reconnected (executed), the relay closed
    3.31.0.5   ArmForClosure   reconnected (executed) with the relay armed: the customer's button closes it

Source: IEC 61968-9:2013 Annex E; the same values as Honeywell/Elster Connexo's ``com.elster.jupiter.cbo``
EndDeviceDomain / EndDeviceEventOrAction enumerations and its EndDeviceControlTypeMapping (OPEN_REMOTE_SWITCH
x.31.0.23, CLOSE_REMOTE_SWITCH x.31.0.18, ARM_REMOTE_SWITCH_FOR_CLOSURE x.31.0.5); docs/bridge.md.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from enum import IntEnum
from typing import Any

__all__ = [
    "ARM_FOR_CLOSURE",
    "CONNECT",
    "CONTROL_KINDS",
    "DISCONNECT",
    "EndDeviceDomain",
    "EndDeviceEventOrAction",
    "EndDeviceSubdomain",
    "EndDeviceType",
    "bill_to_meter_readings",
    "control_type",
    "notice_to_end_device_controls",
    "parse_control_type",
]

_MSG_NS = "http://iec.ch/TC57/2011/schema/message"
_MR_NS = "http://iec.ch/TC57/2011/MeterReadings#"
_EDC_NS = "http://iec.ch/TC57/2011/EndDeviceControls#"


class EndDeviceType(IntEnum):
    """IEC 61968-9 Annex E EndDeviceType (the first part of a code): the values amiflow uses."""

    ELECTRIC_METER = 3


class EndDeviceDomain(IntEnum):
    """EndDeviceDomain (second part): 31 = RCDSwitch, remote connect/disconnect."""

    RCD_SWITCH = 31


class EndDeviceSubdomain(IntEnum):
    """EndDeviceSubdomain (third part): 0 = not applicable."""

    NOT_APPLICABLE = 0


class EndDeviceEventOrAction(IntEnum):
    """EndDeviceEventOrAction (fourth part): the switch commands."""

    ARM_FOR_CLOSURE = 5
    ARM_FOR_OPEN = 6
    CONNECT = 18
    DISCONNECT = 23


def control_type(
    device: EndDeviceType, domain: EndDeviceDomain, subdomain: EndDeviceSubdomain, action: EndDeviceEventOrAction
) -> str:
    """The dotted code ``type.domain.subdomain.eventOrAction`` of an EndDeviceControlType."""
    return f"{int(device)}.{int(domain)}.{int(subdomain)}.{int(action)}"


def parse_control_type(
    code: str,
) -> tuple[EndDeviceType, EndDeviceDomain, EndDeviceSubdomain, EndDeviceEventOrAction]:
    """The four enumerations of a code amiflow sends; ValueError for another shape or value."""
    parts = code.split(".")
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        raise ValueError(f"EndDeviceControlType {code!r}: expected type.domain.subdomain.eventOrAction")
    a, b, c, d = (int(p) for p in parts)
    return EndDeviceType(a), EndDeviceDomain(b), EndDeviceSubdomain(c), EndDeviceEventOrAction(d)


_METER, _SWITCH, _NA = EndDeviceType.ELECTRIC_METER, EndDeviceDomain.RCD_SWITCH, EndDeviceSubdomain.NOT_APPLICABLE
DISCONNECT = control_type(_METER, _SWITCH, _NA, EndDeviceEventOrAction.DISCONNECT)  # "3.31.0.23"
CONNECT = control_type(_METER, _SWITCH, _NA, EndDeviceEventOrAction.CONNECT)  # "3.31.0.18"
ARM_FOR_CLOSURE = control_type(_METER, _SWITCH, _NA, EndDeviceEventOrAction.ARM_FOR_CLOSURE)  # "3.31.0.5"

#: notice kind -> (EndDeviceControlType code, action); a reconnect that left the relay armed is ARM_FOR_CLOSURE
CONTROL_KINDS: dict[str, tuple[str, str]] = {
    "disconnect_scheduled": (DISCONNECT, "scheduled"),
    "disconnected": (DISCONNECT, "executed"),
    "reconnected": (CONNECT, "executed"),
}


def _control_code(kind: str, payload: dict[str, Any]) -> tuple[str, str] | None:
    mapping = CONTROL_KINDS.get(kind)
    if (
        mapping is not None
        and kind == "reconnected"
        and (payload.get("customer_action_required") or payload.get("relay") == "armed")
    ):
        return ARM_FOR_CLOSURE, mapping[1]
    return mapping


def _sub(parent: ET.Element, tag: str, text: object | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = str(text)
    return el


def _envelope(noun: str, key: str, correlation: object | None) -> tuple[ET.Element, ET.Element]:
    root = ET.Element("RequestMessage", {"xmlns": _MSG_NS})
    header = _sub(root, "Header")
    _sub(header, "Verb", "created")
    _sub(header, "Noun", noun)
    _sub(header, "Source", "amiflow")
    _sub(header, "MessageID", key)
    if correlation is not None:
        _sub(header, "CorrelationID", correlation)
    return root, _sub(root, "Payload")


def _meter_names(payload: dict[str, Any]) -> list[str]:
    meters = payload.get("meters") or ([payload["meter"]] if payload.get("meter") else [])
    names = []
    for m in meters:
        if isinstance(m, dict):
            names.append(str(m.get("meter") or m.get("name") or m.get("id")))
        else:
            names.append(str(m))
    return names


def _leaves(value: Any, path: str) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        out: list[tuple[str, Any]] = []
        for k in sorted(value):
            out.extend(_leaves(value[k], f"{path}/{k}" if path else str(k)))
        return out
    if isinstance(value, list):
        return [pair for i, v in enumerate(value) for pair in _leaves(v, f"{path}/{i}")]
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int | float) or (isinstance(value, str) and _is_number(value)):
        return [(path, value)]
    return []


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _tostring(root: ET.Element) -> bytes:
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data


def bill_to_meter_readings(payload: dict[str, Any], key: str) -> bytes:
    """A bill as an IEC 61968-9 MeterReadings message (bytes, deterministic)."""
    root, body = _envelope("MeterReadings", key, payload.get("bill_id"))
    readings_root = _sub(body, "MeterReadings", xmlns=_MR_NS)
    period = payload.get("period") or {}
    stamp = period.get("end_utc") or period.get("end") or ""
    determinants = _leaves(payload.get("determinants") or {}, "")
    extras = [("bill/total", payload.get("total")), ("bill/estimated_share", payload.get("estimated_share"))]
    for meter in _meter_names(payload) or [""]:
        mr = _sub(readings_root, "MeterReading")
        if payload.get("bill_id") is not None:
            _sub(mr, "mRID", f"{payload['bill_id']}/{meter}" if meter else payload["bill_id"])
        if period:
            vi = _sub(mr, "valuesInterval")
            _sub(vi, "start", period.get("start_utc") or period.get("start"))
            _sub(vi, "end", stamp)
        _sub(_sub(mr, "Meter"), "mRID", meter)
        if payload.get("account") is not None:
            _sub(_sub(mr, "UsagePoint"), "mRID", payload["account"])
        for path, value in determinants + [(p, v) for p, v in extras if v is not None]:
            reading = _sub(mr, "Readings")
            _sub(reading, "timeStamp", stamp)
            _sub(reading, "value", value)
            _sub(reading, "ReadingType", ref=f"amiflow:determinant/{path}")
    return _tostring(root)


def notice_to_end_device_controls(kind: str, payload: dict[str, Any], key: str) -> bytes | None:
    """A relay notice as an EndDeviceControls message, or None when ``kind`` has no CIM control mapping."""
    mapping = _control_code(kind, payload)
    if mapping is None:
        return None
    code, action = mapping
    correlation = payload.get("command_id") or payload.get("notice_id") or payload.get("id")
    root, body = _envelope("EndDeviceControls", key, correlation)
    controls = _sub(body, "EndDeviceControls", xmlns=_EDC_NS)
    when = payload.get("scheduled_at") or payload.get("ts") or payload.get("at") or payload.get("issued_at")
    for meter in _meter_names(payload) or [""]:
        edc = _sub(controls, "EndDeviceControl")
        _sub(edc, "mRID", f"{key}/{meter}" if meter else key)
        _sub(edc, "reason", f"amiflow:{kind}/{action}")
        if when is not None:
            _sub(_sub(edc, "scheduledInterval"), "start", when)
        _sub(edc, "EndDeviceControlType", ref=code)
        _sub(_sub(edc, "EndDevices"), "mRID", meter)
        if payload.get("account") is not None:
            _sub(_sub(edc, "UsagePoints"), "mRID", payload["account"])
    return _tostring(root)
