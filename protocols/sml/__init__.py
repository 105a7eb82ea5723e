"""SML (Smart Message Language 1.04, BSI TR-03109-1 Anlage IV / EN 62056-5-3-8): amiflow's own sans-I/O codec.

German and Austrian meters push SML files on their optical port (9600 8N1). Layers, each module starting with the
layout it implements:

- :mod:`.transport` the escape-sequence framing and :class:`SmlStreamDecoder` (resync, counted bad frames);
- :mod:`.crc` CRC-16/X-25 and the firmware variants; :mod:`.tlv` type-length-value fields;
- :mod:`.model` the messages as frozen dataclasses, :mod:`.messages` their decoder, :mod:`.encoder` the encoder;
- :mod:`.readings` messages -> :class:`~amiflow.types.ReadingBatch`, :mod:`.server_id` nameplate ids;
- :mod:`.capture` a whole capture (binary or hex text, framed or bare messages) for ``amiflow decode sml``.

Bad meter data comes back as :class:`~amiflow.types.Issue` records; the only exception raised is
:class:`~amiflow.errors.FrameError` (from the strict ``from_bytes``/``decode_tlv`` entry points). No code here
imports libsml, smllib or any other GPL implementation; smllib is a test-only peer in a child process.
"""

from __future__ import annotations

from .capture import SmlCapture, SmlFile, decode_capture, decode_sml_capture, from_hex
from .crc import crc16_kermit, crc16_x25
from .encoder import encode_file, encode_message, encode_messages
from .messages import parse_messages
from .model import (
    AttentionRes,
    GetListRes,
    GetProfileListRes,
    ListEntry,
    PeriodEntry,
    PublicCloseReq,
    PublicCloseRes,
    PublicOpenReq,
    PublicOpenRes,
    SmlMessage,
    SmlTime,
    UnknownBody,
)
from .readings import SML_SOURCE, SmlFileReadings, meter_id, sml_readings
from .server_id import format_server_id
from .tlv import Typed
from .transport import NEED_DATA, FrameFault, SmlFrame, SmlStreamDecoder, encode_transport

__all__ = [
    "NEED_DATA",
    "SML_SOURCE",
    "AttentionRes",
    "FrameFault",
    "GetListRes",
    "GetProfileListRes",
    "ListEntry",
    "PeriodEntry",
    "PublicCloseReq",
    "PublicCloseRes",
    "PublicOpenReq",
    "PublicOpenRes",
    "SmlCapture",
    "SmlFile",
    "SmlFileReadings",
    "SmlFrame",
    "SmlMessage",
    "SmlStreamDecoder",
    "SmlTime",
    "Typed",
    "UnknownBody",
    "crc16_kermit",
    "crc16_x25",
    "decode_capture",
    "decode_sml_capture",
    "encode_file",
    "encode_message",
    "encode_messages",
    "encode_transport",
    "format_server_id",
    "from_hex",
    "meter_id",
    "parse_messages",
    "sml_readings",
]
