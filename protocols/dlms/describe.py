"""Human-readable views of captured DLMS traffic for ``amiflow decode hdlc|dlms-apdu``.

Both functions return the readings payload shape ``{"meter", "readings": [{"obis", "ts", "value", "unit"}],
"frames": [...], "issues": [...]}``. Readings come from GET answers whose request is in the same capture (the
request names the object): register values (scaled when the capture also holds the scaler_unit) and profile buffer
rows (named by the capture_objects when those were read too). A malformed frame raises FrameError.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from amiflow.errors import FrameError
from amiflow.types import Obis

from . import axdr
from .acse import Aare, Aarq, InitiateRequest, InitiateResponse, Rlre, Rlrq
from .cosem import DateTime, ScalerUnit
from .hdlc import NEED_DATA, FrameKind, HdlcFrame, HdlcFramer, HdlcParameters
from .profile_generic import CaptureObject, parse_capture_objects
from .xdlms import (
    ActionRequest,
    ActionResponse,
    ActionResult,
    DataAccessResult,
    ExceptionResponse,
    GetRequest,
    GetResponse,
    SetRequest,
    SetResponse,
    parse_xdlms,
    result_name,
)

__all__ = ["describe_apdu", "describe_hdlc"]


class _Describer:
    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.readings: list[dict[str, Any]] = []
        self.issues: list[dict[str, Any]] = []
        self._requests: dict[int, list[tuple[int, Obis, int]]] = {}
        self._values: list[tuple[int, Obis, int, Any]] = []
        self._blocks: dict[int, bytearray] = {}

    def result(self) -> dict[str, Any]:
        self._make_readings()
        return {"meter": None, "readings": self.readings, "frames": self.frames, "issues": self.issues}

    def apdu(self, data: bytes, extra: dict[str, Any] | None = None) -> None:
        entry: dict[str, Any] = dict(extra or {})
        entry.update(self._apdu_fields(data))
        self.frames.append(entry)

    def _apdu_fields(self, data: bytes) -> dict[str, Any]:
        if not data:
            raise FrameError("empty APDU")
        tag = data[0]
        if tag == 0x60:
            aarq = Aarq.from_bytes(data)
            out: dict[str, Any] = {"apdu": "AARQ", "context": aarq.context.name, "mechanism": aarq.mechanism.name}
            if aarq.auth_value is not None:
                out["authentication_value"] = f"(hidden, {len(aarq.auth_value)} bytes)"
            if aarq.user_information[:1] == b"\x01":
                init = InitiateRequest.from_bytes(aarq.user_information)
                out.update(conformance=f"{init.conformance:06X}", max_pdu=init.max_pdu)
            return out
        if tag == 0x61:
            aare = Aare.from_bytes(data)
            out = {"apdu": "AARE", "result": aare.result.name, "diagnostic": aare.reason()}
            if aare.user_information[:1] == b"\x08":
                resp = InitiateResponse.from_bytes(aare.user_information)
                out.update(conformance=f"{resp.conformance:06X}", max_pdu=resp.max_pdu)
            return out
        if tag == 0x62:
            return {"apdu": "RLRQ", "reason": Rlrq.from_bytes(data).reason}
        if tag == 0x63:
            return {"apdu": "RLRE", "reason": Rlre.from_bytes(data).reason}
        msg = parse_xdlms(data)
        if isinstance(msg, GetRequest):
            items = [(d.class_id, d.obis, d.index) for d, _ in msg.items]
            if msg.kind != 2:  # a GET-Request-Next continues the request before it
                self._requests[msg.invoke_id & 0x0F] = items
            kind = {1: "normal", 2: "next", 3: "with-list"}[msg.kind]
            out = {"apdu": f"GET-Request-{kind}", "invoke_id": msg.invoke_id & 0x0F}
            if msg.kind == 2:
                out["block"] = msg.block
            out["attributes"] = [
                {"class_id": c, "obis": str(o), "attribute": a, "selective_access": acc.selector if acc else None}
                for (c, o, a), (_, acc) in zip(items, msg.items, strict=True)
            ]
            return out
        if isinstance(msg, GetResponse):
            return self._get_response(msg)
        if isinstance(msg, SetRequest):
            return {"apdu": "SET-Request", "invoke_id": msg.invoke_id & 0x0F, "kind": msg.kind}
        if isinstance(msg, SetResponse):
            return {"apdu": "SET-Response", "result": result_name(DataAccessResult, msg.result)}
        if isinstance(msg, ActionRequest):
            d = msg.descriptor
            return {"apdu": "ACTION-Request", "class_id": d.class_id, "obis": str(d.obis), "method": d.index}
        if isinstance(msg, ActionResponse):
            return {"apdu": "ACTION-Response", "result": result_name(ActionResult, msg.result)}
        assert isinstance(msg, ExceptionResponse)
        return {"apdu": "EXCEPTION-Response", "error": msg.describe()}

    def _get_response(self, msg: GetResponse) -> dict[str, Any]:
        iid = msg.invoke_id & 0x0F
        out: dict[str, Any] = {"apdu": f"GET-Response-{ {1: 'normal', 2: 'with-datablock', 3: 'with-list'}[msg.kind] }"}
        out["invoke_id"] = iid
        results: list[dict[str, Any]] = []
        items = msg.results
        if msg.kind == 2:
            raw_block, err_block = msg.results[0]
            out.update(block=msg.block, last=msg.last, bytes=len(raw_block or b""))
            if raw_block is None:
                self._blocks.pop(iid, None)
                out["error"] = result_name(DataAccessResult, err_block or 0)
                return out
            self._blocks.setdefault(iid, bytearray()).extend(raw_block)
            if not msg.last:
                return out
            items = ((bytes(self._blocks.pop(iid)), None),)  # the reassembled long answer
        requests = self._requests.get(iid, [])
        for i, (raw, err) in enumerate(items):
            if raw is None:
                results.append({"error": result_name(DataAccessResult, err or 0)})
                continue
            value = axdr.decode(raw)
            results.append({"value": axdr.to_json(value)})
            if i < len(requests):
                self._values.append((*requests[i], value))
        out["results"] = results
        return out

    def _make_readings(self) -> None:
        scalers = {o: v for c, o, a, v in self._values if c in (3, 4) and a == 3}
        captures = {o: v for c, o, a, v in self._values if c == 7 and a == 3}
        periods = {o: int(v) for c, o, a, v in self._values if c == 7 and a == 4 and isinstance(v, int)}
        for class_id, obis, attr, value in self._values:
            if attr != 2:
                continue
            if class_id == 7 and isinstance(value, list):
                self._profile_readings(obis, value, captures.get(obis), periods.get(obis), scalers)
            elif isinstance(value, int | float) and not isinstance(value, bool):
                su = ScalerUnit.from_value(scalers[obis]) if obis in scalers else None
                self.readings.append(
                    {
                        "obis": str(obis),
                        "ts": None,
                        "value": su.apply(value) if su else float(value),
                        "unit": su.unit_text if su else None,
                    }
                )

    def _profile_readings(
        self, obis: Obis, rows: list[Any], capture: Any, period_s: int | None, scalers: dict[Obis, Any]
    ) -> None:
        objects: tuple[CaptureObject, ...] = ()
        if capture is not None:
            try:
                objects = parse_capture_objects(capture)
            except FrameError as exc:
                self.issues.append({"code": "bad_capture_objects", "detail": str(exc)})
        clock_col = next((i for i, o in enumerate(objects) if o.is_clock), None)
        prev_ts: datetime | None = None
        prev: dict[int, Any] = {}
        for row in rows:
            if not isinstance(row, tuple):
                continue
            if clock_col is None:
                clock_col = next((i for i, v in enumerate(row) if isinstance(v, bytes) and len(v) == 12), None)
            cell = row[clock_col] if clock_col is not None and clock_col < len(row) else None
            if isinstance(cell, bytes):
                try:
                    prev_ts = DateTime.from_bytes(cell).to_datetime()
                except (ValueError, FrameError) as exc:
                    self.issues.append({"code": "bad_clock", "detail": str(exc)})
                    prev_ts = None
            elif cell is None and prev_ts is not None and period_s:
                prev_ts += timedelta(seconds=period_s)  # null clock: the previous row's time + capture_period
            else:
                prev_ts = None
            ts = prev_ts.astimezone(UTC).isoformat() if prev_ts is not None else None
            for c, value in enumerate(row):
                if c == clock_col:
                    continue
                value = prev.get(c) if value is None else value  # null-data: same as the row before
                prev[c] = value
                if not isinstance(value, int | float) or isinstance(value, bool):
                    continue
                name = objects[c].obis if c < len(objects) else None
                su = ScalerUnit.from_value(scalers[name]) if name in scalers else None
                self.readings.append(
                    {
                        "obis": str(name) if name is not None else f"{obis}[{c}]",
                        "ts": ts,
                        "value": su.apply(value) if su else float(value),
                        "unit": su.unit_text if su else None,
                    }
                )


def describe_apdu(data: bytes) -> dict[str, Any]:
    """Decode one APDU (AARQ/AARE/RLRQ/RLRE or an xDLMS service); FrameError when malformed."""
    d = _Describer()
    d.apdu(bytes(data))
    return d.result()


def describe_hdlc(data: bytes) -> dict[str, Any]:
    """Decode a capture of HDLC frames (one or more, both directions); I-frame segments are reassembled into APDUs
    that are described too. FrameError on the first malformed frame, or when no frame is found."""
    framer = HdlcFramer()
    framer.receive_data(bytes(data))
    d = _Describer()
    partial: dict[str, bytearray] = {}
    count = 0
    while True:
        frame = framer.next_event()
        if frame is NEED_DATA:
            break
        assert isinstance(frame, HdlcFrame)
        count += 1
        entry = _frame_entry(frame)
        d.frames.append(entry)
        if frame.kind in (FrameKind.I, FrameKind.UI) and frame.info:
            key = f"{frame.src}>{frame.dest}"
            buf = partial.setdefault(key, bytearray())
            buf += frame.info
            if not frame.segmented:
                apdu = bytes(buf)
                del partial[key]
                if apdu[:3] in (b"\xe6\xe6\x00", b"\xe6\xe7\x00"):
                    apdu = apdu[3:]
                d.apdu(apdu, {"from": str(frame.src), "to": str(frame.dest)})
    if count == 0:
        raise FrameError("HDLC: no complete frame in the input")
    if framer.buffered > 1:
        d.issues.append({"code": "trailing_bytes", "detail": f"{framer.buffered} bytes after the last frame"})
    for key in partial:
        d.issues.append({"code": "incomplete_segments", "detail": f"segmented APDU {key} never completed"})
    return d.result()


def _frame_entry(frame: HdlcFrame) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "hdlc": frame.kind.value,
        "dest": str(frame.dest),
        "src": str(frame.src),
        "control": f"{frame.control:02X}",
        "segmented": frame.segmented,
    }
    if frame.kind is FrameKind.I:
        entry.update(ns=frame.ns, nr=frame.nr)
    elif frame.kind in (FrameKind.RR, FrameKind.RNR):
        entry["nr"] = frame.nr
    if frame.kind in (FrameKind.SNRM, FrameKind.UA) and frame.info:
        p = HdlcParameters.from_bytes(frame.info)
        entry["parameters"] = {"max_info_tx": p.max_info_tx, "max_info_rx": p.max_info_rx, "window": p.window_tx}
    return entry
