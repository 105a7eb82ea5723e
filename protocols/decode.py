"""Decoding of captures for an engineer (``amiflow decode``): bytes in, a JSON-able result out.

The result has the readings payload shape: ``meter``, ``readings`` [{``obis``, ``ts``, ``value``, ``unit``}] (base
units, ``ts`` ISO 8601 UTC), plus ``frames`` (what was found in the input) and ``issues`` ({``code``, ``detail``}).
A bad frame is an issue in the result, not an exception.

- ``p1``: one or more DSMR telegrams (CRC checked), split like a serial port stream
  (:func:`protocols.p1.describe_capture`); informational issues carry ``severity: "info"``.
- ``iec62056-21``: a captured mode C exchange or just the readout (identification line, STX .. ETX BCC, checked);
  plain data lines without framing are accepted too.
- ``hdlc`` / ``dlms-apdu``: :func:`protocols.dlms.describe_hdlc` / :func:`protocols.dlms.describe_apdu`.
- ``modbus-map``: a register map CSV (amiflow/Eastron format): its registers and the coalesced read requests.
- ``sml``: any number of SML files (transport-framed, noise between them skipped and counted as ``skipped_bytes``)
  or bare SML messages, binary or hex text (:func:`protocols.sml.decode_capture`); one frame per file. Issues of
  files that still decoded (a message CRC quirk under a good transport CRC, an unknown message body, a unit amiflow
  does not store) carry ``severity: "info"``.
- ``mbus``: wired M-Bus frames (a serial or gateway capture; the telegrams of a multi-telegram readout joined) or
  wireless M-Bus frames (one per line of hex text), :func:`protocols.mbus.decode_mbus_capture`: adds ``device``
  {``id``, ``manufacturer``, ``version``, ``medium``} and ``records`` [{``storage``, ``tariff``, ``subunit``,
  ``function``, ``quantity``, ``unit``, ``value``}].
"""

from __future__ import annotations

import importlib
import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from amiflow.errors import AmiflowError, ConfigError
from amiflow.types import Issue, ReadingBatch
from protocols import iec62056_21, p1, sml

__all__ = ["KINDS", "decode_bytes"]

KINDS = ("p1", "iec62056-21", "hdlc", "dlms-apdu", "modbus-map", "sml", "mbus")
_SML_INFO = frozenset({"message_crc_mismatch", "unknown_message", "unsupported_unit"})  # decoded, merely unusual


class _NotBuilt(Exception):
    pass


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _readings(batch: ReadingBatch) -> list[dict[str, Any]]:
    return [
        {"obis": str(o), "ts": _iso(int(t)), "value": float(v), "unit": str(u)}
        for o, t, v, u in zip(batch.obis, batch.ts, batch.value, batch.unit, strict=True)
    ]


def _issues(issues: Sequence[Issue]) -> list[dict[str, Any]]:
    return [{"code": i.code, "detail": i.detail, **({"meter": i.meter} if i.meter else {})} for i in issues]


def _decode_p1(data: bytes) -> dict[str, Any]:
    return p1.describe_capture(data, received_ts=int(time.time()))  # DSMR 2.2/3.0 telegrams have no clock: now


def _decode_sml(data: bytes) -> dict[str, Any]:
    capture = sml.decode_capture(data, received_ts=int(time.time()))  # most eHZ send no clock, only secIndex
    issues = _issues(capture.issues)
    for item in issues:
        if item["code"] in _SML_INFO:
            item["severity"] = "info"
    frames = [f.describe() for f in capture.files]
    out = {"meter": capture.meter, "readings": _readings(capture.batch), "frames": frames, "issues": issues}
    return out | ({"skipped_bytes": capture.skipped} if capture.skipped else {})


def _decode_mbus(data: bytes) -> dict[str, Any]:
    from protocols.mbus.capture import decode_mbus_capture

    return decode_mbus_capture(data, received_ts=int(time.time()))  # the meter's clock has no zone: read time


def _decode_iec(data: bytes) -> dict[str, Any]:
    frames: list[dict[str, Any]] = []
    issues: list[Issue] = []
    for m in re.finditer(rb"/\?([ -~]*)!\r?\n", data):
        frames.append({"kind": "sign_on", "address": m[1].decode("ascii")})
    ident = None
    for m in re.finditer(rb"/(?!\?)[^\r\n]*\r?\n?", data):
        if data.find(bytes([iec62056_21.STX])) != -1 and m.start() > data.find(bytes([iec62056_21.STX])):
            break
        try:
            ident = iec62056_21.parse_identification(m[0])
        except AmiflowError:
            continue
        frames.append(
            {
                "kind": "identification",
                "manufacturer": ident.manufacturer,
                "baudrate": ident.baudrate,
                "ident": ident.ident,
                "text": ident.text,
            }
        )
        break
    for m in re.finditer(rb"\x06([0-9])([0-9])([0-9])\r\n", data):
        frames.append(
            {
                "kind": "option_select",
                "protocol": chr(m[1][0]),
                "baudrate": iec62056_21.BAUD_RATES.get(chr(m[2][0]), 300),
                "mode": chr(m[3][0]),
            }
        )
    stx = data.find(bytes([iec62056_21.STX]))
    block = data[stx:] if stx >= 0 else data
    if stx < 0 and ident is not None:
        block = data[data.find(b"\n", data.find(b"/")) + 1 :]
    parsed = iec62056_21.parse_readout(block, meter=None)
    if any(i.code == "no_meter_id" for i in parsed.issues):
        parsed = iec62056_21.parse_readout(block, meter=ident.text if ident else "unknown")
    issues += parsed.issues
    frame: dict[str, Any] = {"kind": "readout", "bytes": len(block), "datasets": len(parsed.datasets)}
    if stx >= 0:
        frame["bcc_ok"] = not any(i.code == "bad_bcc" for i in parsed.issues)
    if parsed.serial:
        frame["serial"] = parsed.serial
    if parsed.clock:
        frame["clock"] = parsed.clock.strftime("%Y-%m-%dT%H:%M:%SZ")
    frames.append(frame)
    if not parsed.datasets and not any(i.code == "bad_bcc" for i in issues):
        issues.append(Issue("no_data", "no data lines in the input"))
    meter = parsed.serial or (str(parsed.readings.meter[0]) if len(parsed.readings) else None)
    return {"meter": meter, "readings": _readings(parsed.readings), "frames": frames, "issues": _issues(issues)}


def _dlms(name: str) -> Callable[[bytes], Any]:
    try:
        module = importlib.import_module("protocols.dlms")
    except ImportError:
        module = None
    fn = getattr(module, name, None)
    if fn is None:
        raise _NotBuilt(f"protocols.dlms.{name} is missing")
    return fn  # type: ignore[no-any-return]


def _decode_dlms(data: bytes, name: str) -> dict[str, Any]:
    fn = _dlms(name)
    try:
        described = fn(data)
    except (AmiflowError, ValueError) as exc:
        return {"meter": None, "readings": [], "frames": [], "issues": [{"code": "bad_frame", "detail": str(exc)}]}
    if isinstance(described, dict) and "readings" in described:
        return {"meter": None, "readings": [], "frames": [], "issues": [], **described}  # already payload-shaped
    frames = described if isinstance(described, list) else [described]
    return {"meter": None, "readings": [], "frames": frames, "issues": []}


def _decode_modbus_map(data: bytes, name: str) -> dict[str, Any]:
    try:
        from protocols.modbus.maps import read_map_csv
    except ImportError:
        raise _NotBuilt("protocols.modbus offers no map reader") from None
    try:
        regmap = read_map_csv(data.decode("utf-8"), name)
        requests = regmap.plan()
    except (AmiflowError, UnicodeDecodeError) as exc:
        return {"meter": None, "readings": [], "frames": [], "issues": [{"code": "bad_map", "detail": str(exc)}]}
    registers = [
        {
            "name": r.name,
            "address": r.address,
            "function_code": r.function_code,
            "type": r.type,
            "count": r.count,
            "unit": r.unit,
            "obis": r.obis,
            "writable": r.writable,
        }
        for r in regmap.registers
    ]
    frames = [
        {
            "kind": "request",
            "function_code": q.function_code,
            "address": q.address,
            "count": q.count,
            "registers": [r.name for r in q.registers],
        }
        for q in requests
    ]
    return {"meter": None, "readings": [], "map": regmap.name, "registers": registers, "frames": frames, "issues": []}


def decode_bytes(kind: str, data: bytes, *, name: str = "input") -> dict[str, Any]:
    """Decode ``data`` as ``kind`` (one of :data:`KINDS`) into the JSON-able result the CLI prints.

    Raises ConfigError for an unknown kind; a missing decoder of another package raises ``LookupError``.
    """
    try:
        if kind == "p1":
            return _decode_p1(data)
        if kind == "iec62056-21":
            return _decode_iec(data)
        if kind == "hdlc":
            return _decode_dlms(data, "describe_hdlc")
        if kind == "dlms-apdu":
            return _decode_dlms(data, "describe_apdu")
        if kind == "modbus-map":
            return _decode_modbus_map(data, name)
        if kind == "sml":
            return _decode_sml(data)
        if kind == "mbus":
            return _decode_mbus(data)
    except _NotBuilt as exc:
        raise LookupError(str(exc)) from None
    raise ConfigError(f"decode: unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
