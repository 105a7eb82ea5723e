"""Decode a whole SML capture (binary or hex text) for ``amiflow decode sml FILE [--hex]`` and for tests.

A capture is what a reader wrote down from an optical head: any number of transport-framed SML files
(SML 1.04 clause 8, see :mod:`.transport`) with noise around them, or, when there is no start sequence at all,
bare message bytes without the transport (``76 ...``). Hex text is accepted with whitespace, ``:``/``,``/``-``
separators, ``0x`` prefixes, ``h`` suffixes (``1bh 1bh ...``, the Tasmota/Energy2Shelly log style) and ``#``
comments to the end of a line (the annotated vectors in tests/data/sml/).

Every frame fault and message problem becomes an :class:`~amiflow.types.Issue`; nothing here raises for bad
input. Issue codes: those of the transport (``bad_crc``, ``truncated``, ``bad_escape``, ``bad_padding``,
``too_long``), of :mod:`.messages` and :mod:`.readings`, plus ``bad_hex`` and ``no_sml``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from amiflow.types import Issue, ReadingBatch

from .messages import parse_messages
from .model import SmlMessage
from .readings import SML_SOURCE, meter_id, sml_readings
from .transport import FrameFault, SmlFrame, SmlStreamDecoder

__all__ = ["SmlCapture", "SmlFile", "decode_capture", "decode_sml_capture", "from_hex"]

_COMMENT: Final = re.compile(rb"#[^\n]*")
_SEPARATORS: Final = re.compile(rb"0[xX]|(?<=[0-9a-fA-F]{2})h\b|[\s:,;\-]")
_HEX: Final = re.compile(rb"(?:[0-9a-fA-F]{2})+")
_NAMES: Final = {
    0x0100: "PublicOpen.Req",
    0x0101: "PublicOpen.Res",
    0x0200: "PublicClose.Req",
    0x0201: "PublicClose.Res",
    0x0401: "GetProfileList.Res",
    0x0701: "GetList.Res",
    0xFF01: "Attention.Res",
}


def from_hex(data: bytes) -> bytes | None:
    """The bytes of hex text (separators tolerated), or None when ``data`` is not hex text."""
    cleaned = _SEPARATORS.sub(b"", _COMMENT.sub(b"", bytes(data)))
    return bytes.fromhex(cleaned.decode("ascii")) if cleaned and _HEX.fullmatch(cleaned) else None


@dataclass(frozen=True, slots=True)
class SmlFile:
    """One decoded SML file: its size as sent, CRC variant (None for bare messages), messages and readings."""

    size: int
    crc_variant: str | None
    messages: tuple[SmlMessage, ...]
    meter: str | None
    clock: str | None
    readings: int

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary for ``amiflow decode sml``: size, CRC, message names, server id, meter, clock."""
        server = next((getattr(m.body, "server_id", None) for m in self.messages), None)
        return {
            "kind": "sml" if self.crc_variant else "sml-messages",
            "bytes": self.size,
            "crc": self.crc_variant,
            "messages": [_NAMES.get(m.tag, f"0x{m.tag:04x}") for m in self.messages],
            "server_id": server.hex() if isinstance(server, bytes) else None,
            "meter": self.meter,
            "clock": self.clock,
            "readings": self.readings,
        }


@dataclass(frozen=True, slots=True)
class SmlCapture:
    """Everything found in a capture: files, readings of all of them, issues, bytes skipped outside frames."""

    files: tuple[SmlFile, ...]
    batch: ReadingBatch
    issues: tuple[Issue, ...]
    skipped: int

    @property
    def meter(self) -> str | None:
        """The meter of the first file that names one."""
        return next((f.meter for f in self.files if f.meter), None)


def decode_capture(
    data: bytes,
    *,
    hex: bool | None = None,
    meter: str | None = None,
    received_ts: int | None = None,
    crc_quirks: bool = True,
    dzg_unsigned_power: bool = False,
) -> SmlCapture:
    """Decode ``data``: hex text when ``hex`` is True (or, with None, when it looks like hex), else binary."""
    raw = bytes(data)
    if hex is not False:
        decoded = from_hex(raw)
        if decoded is None and hex:
            return SmlCapture((), ReadingBatch(), (Issue("bad_hex", "the input is not hex text"),), 0)
        raw = decoded if decoded is not None else raw
    opts = {"meter": meter, "received_ts": received_ts, "dzg_unsigned_power": dzg_unsigned_power}
    dec = SmlStreamDecoder(crc_quirks=crc_quirks)
    dec.receive_data(raw)
    dec.receive_data(b"")
    files: list[SmlFile] = []
    batches: list[ReadingBatch] = []
    issues: list[Issue] = []
    while (event := dec.next_event()) is not None:
        if isinstance(event, FrameFault):
            issues.append(Issue(event.code, event.detail, meter, event.raw[:64]))
            continue
        _decode_file(event, len(event.raw), event.crc_variant, crc_quirks, opts, files, batches, issues)
    skipped = dec.skipped
    if not files and not dec.faults:
        body = raw.lstrip(b"\x00")
        if body[:1] == b"\x76":
            frame = SmlFrame(body, body)
            _decode_file(frame, len(body), None, crc_quirks, opts, files, batches, issues)
            skipped = 0
        else:
            issues.append(Issue("no_sml", "no SML transport start (1b1b1b1b 01010101) and no SML message"))
    return SmlCapture(tuple(files), ReadingBatch.concat(batches), tuple(issues), skipped)


def _decode_file(
    frame: SmlFrame,
    size: int,
    variant: str | None,
    crc_quirks: bool,
    opts: dict[str, Any],
    files: list[SmlFile],
    batches: list[ReadingBatch],
    issues: list[Issue],
) -> None:
    messages, found = parse_messages(frame.body, crc_quirks=crc_quirks, trusted=variant is not None)
    name = opts["meter"] or meter_id(messages)
    issues.extend(Issue(i.code, i.detail, name, i.raw) for i in found)
    result = sml_readings(
        messages,
        meter=opts["meter"],
        received_ts=opts["received_ts"],
        source=SML_SOURCE,
        dzg_unsigned_power=opts["dzg_unsigned_power"],
    )
    issues.extend(result.issues)
    batches.append(result.batch)
    files.append(SmlFile(size, variant, tuple(messages), result.meter, result.clock, len(result.batch)))


def decode_sml_capture(data: bytes, **options: Any) -> tuple[ReadingBatch, list[Issue]]:
    """The readings and issues of a capture (see :func:`decode_capture` for ``options``)."""
    capture = decode_capture(data, **options)
    return capture.batch, list(capture.issues)
