"""Decode a whole M-Bus or wireless M-Bus capture for ``amiflow decode mbus FILE [--hex]`` and for tests.

A capture is binary or hex text. Wired: any number of link-layer frames (E5, short, control and long frames)
with noise around them, as a serial port or TCP gateway delivered them (a capture that does not start with a
frame is read as wired when it is not one wireless frame); the RSP_UD telegrams of one multi-telegram
readout (DIF 1F) are joined into one device and one list of records. Wireless: one frame per line of hex text
(the line stream of a stick or a log), or one binary frame, in format A, B or with the CRCs removed.

Hex text may have whitespace, ``:``/``,``/``-`` separators, ``0x`` prefixes and ``#`` comments. Every problem is an
:class:`~amiflow.types.Issue` (those of :mod:`.link`, :mod:`.records`, :mod:`.telegram`, plus ``bad_hex``,
``bad_wmbus_frame``, ``trailing_bytes``, ``no_frame``); nothing here raises for bad input.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any, Final

from amiflow.errors import FrameError
from amiflow.types import Issue

from .link import Ack, FrameFault, LongFrame, MbusStreamDecoder, ShortFrame
from .readings import mbus_readings
from .records import DataRecord
from .security import KeyRing
from .telegram import Telegram, parse_application
from .wmbus import WmbusFrame, decode_wmbus

__all__ = ["decode_mbus_capture", "hex_lines"]

_COMMENT: Final = re.compile(rb"#[^\n]*")
_SEPARATORS: Final = re.compile(rb"0[xX]|[ \t:,;\-]")
_HEX_LINE: Final = re.compile(rb"(?:[0-9a-fA-F]{2})+")


def hex_lines(data: bytes) -> list[bytes] | None:
    """The frames of hex text, one per non-empty line; None when ``data`` is not hex text."""
    lines = []
    for line in _COMMENT.sub(b"", bytes(data)).splitlines():
        cleaned = _SEPARATORS.sub(b"", line.strip())
        if not cleaned:
            continue
        if not _HEX_LINE.fullmatch(cleaned):
            return None
        lines.append(bytes.fromhex(cleaned.decode("ascii")))
    return lines or None


def _wired_frames(
    data: bytes, issues: list[Issue], keys: KeyRing | None
) -> tuple[list[dict[str, Any]], list[Telegram]]:
    dec = MbusStreamDecoder()
    dec.receive_data(data)
    dec.receive_data(b"")
    frames: list[dict[str, Any]] = []
    telegrams: list[Telegram] = []
    while (event := dec.next_event()) is not None:
        if isinstance(event, FrameFault):
            issues.append(Issue(event.code, event.detail, raw=event.raw))
        elif isinstance(event, Ack):
            frames.append({"kind": "ack"})
        elif isinstance(event, ShortFrame):
            frames.append({"kind": "short", "c": f"{event.c:02x}", "address": event.a})
        elif isinstance(event, LongFrame):
            frames.append(_long(event, telegrams, keys))
    if dec.skipped:
        issues.append(Issue("skipped_bytes", f"{dec.skipped} bytes outside frames were skipped"))
    return frames, telegrams


def _long(frame: LongFrame, telegrams: list[Telegram], keys: KeyRing | None) -> dict[str, Any]:
    kind = "rsp_ud" if frame.is_rsp_ud else ("control" if not frame.data else "long")
    info: dict[str, Any] = {"kind": kind, "c": f"{frame.c:02x}", "address": frame.a, "ci": f"{frame.ci:02x}"}
    if frame.is_rsp_ud or frame.ci in (0x72, 0x76, 0x73, 0x77, 0x70, 0x7A):
        telegram = parse_application(frame.ci, frame.data, keys=keys)
        telegrams.append(telegram)
        info["records"] = len(telegram.records)
        info["more_follows"] = telegram.more_follows
    return info


def _wireless_frame(raw: bytes) -> bool:
    """True when ``raw`` is a wM-Bus frame (possibly with a few stick bytes after it)."""
    for cut in (len(raw), raw[0] + 1 if raw else 0):
        try:
            WmbusFrame.from_bytes(raw[:cut])
            return True
        except FrameError:
            continue
    return False


def _wireless(
    lines: list[bytes], issues: list[Issue], keys: KeyRing | None
) -> tuple[list[dict[str, Any]], list[Telegram]]:
    frames: list[dict[str, Any]] = []
    telegrams: list[Telegram] = []
    for i, raw in enumerate(lines):
        size = raw[0] + 1 if raw else 0
        try:
            telegram = decode_wmbus(raw, keys=keys)
        except FrameError as exc:
            if 0 < size < len(raw) <= size + 4:  # some sticks append RSSI / LQI bytes
                try:
                    telegram = decode_wmbus(raw[:size], fmt="none", keys=keys)
                    issues.append(Issue("trailing_bytes", f"frame {i + 1}: {len(raw) - size} bytes after the frame"))
                except FrameError:
                    issues.append(Issue("bad_wmbus_frame", f"frame {i + 1}: {exc}", raw=raw))
                    continue
            else:
                issues.append(Issue("bad_wmbus_frame", f"frame {i + 1}: {exc}", raw=raw))
                continue
        telegrams.append(telegram)
        frames.append({"kind": "wmbus", **telegram.extra.get("link", {}), "records": len(telegram.records)})
    return frames, telegrams


def decode_mbus_capture(data: bytes, *, keys: KeyRing | None = None, received_ts: int | None = None) -> dict[str, Any]:
    """The JSON-able result: ``meter``, ``device``, ``records``, ``readings``, ``frames``, ``issues``."""
    issues: list[Issue] = []
    lines = hex_lines(data)
    frames: list[dict[str, Any]] = []
    telegrams: list[Telegram] = []
    if lines is None and data and all(0x20 <= b < 0x7F or b in (9, 10, 13) for b in data):
        issues.append(Issue("bad_hex", "the input is text but not hex (give binary, or hex text with --hex)"))
    else:
        raw = b"".join(lines) if lines is not None else bytes(data)
        candidates = lines if lines is not None else [raw]
        if raw[:1] in (b"\x68", b"\x10", b"\xe5") or (b"\x68" in raw and not _wireless_frame(candidates[0])):
            frames, telegrams = _wired_frames(raw, issues, keys)
        else:
            frames, telegrams = _wireless(candidates, issues, keys)
    ts = int(time.time()) if received_ts is None else received_ts
    header = next((t.header for t in telegrams if t.header is not None), None)
    records: list[DataRecord] = []
    for telegram in telegrams:
        issues.extend(telegram.issues)
        records.extend(telegram.records)
    if not frames and not any(i.code in ("bad_wmbus_frame", "bad_hex") for i in issues):
        issues.append(Issue("no_frame", "no M-Bus or wireless M-Bus frame in the input"))
    readings = mbus_readings(header, records, received_ts=ts)
    batch = readings.batch
    return {
        "meter": header.ident if header is not None else None,
        "device": header.to_dict() if header is not None else None,
        "records": [r.to_dict() for r in records],
        "readings": [
            {"obis": str(o), "ts": _iso(int(t)), "value": float(v), "unit": str(u)}
            for o, t, v, u in zip(batch.obis, batch.ts, batch.value, batch.unit, strict=True)
        ],
        "clock": readings.clock,
        "telegrams": len(telegrams),
        "frames": frames,
        "issues": [{"code": i.code, "detail": i.detail} for i in issues],
    }


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
