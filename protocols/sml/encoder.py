"""SML messages -> bytes (SML 1.04 clause 5 / BSI TR-03109-1 Anlage IV 5.1), the inverse of :mod:`.messages`.

Used by the simulator and the round-trip tests. Each message is written as a meter writes it::

    76  <transactionId> 62 <groupNo> 62 <abortOnError>  72 63 <tag u16> <body>  63 <crc16>  00

with the message CRC-16/X-25 over the bytes from ``76`` up to the ``crc16`` field, low byte first (or, for a
quirk test, the other byte order or CRC-16/KERMIT, see :mod:`.crc`). :func:`encode_file` adds the transport
(:func:`.transport.encode_transport`). Integer fields are written in the smallest width unless given as a
:class:`~.tlv.Typed`; unit is an Unsigned8 and scaler an Integer8 as in every meter seen. A value that cannot be
written (an Unsigned8 of 300) raises FrameError.
"""

from __future__ import annotations

from collections.abc import Iterable

from amiflow.errors import FrameError

from .crc import crc16_kermit, crc16_x25
from .model import (
    AttentionRes,
    Body,
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
from .tlv import SmlValue, Typed, encode_int, encode_list, encode_octets, encode_uint, encode_value
from .transport import encode_transport

__all__ = ["encode_body", "encode_file", "encode_message", "encode_messages", "encode_time"]


def _u(value: int | Typed | None, width: int | None = None) -> bytes:
    if value is None:
        return b"\x01"
    if isinstance(value, Typed):
        return encode_value(value)
    return encode_uint(value, width)


def _i8(value: int | None) -> bytes:
    return b"\x01" if value is None else encode_int(value, 1)


def encode_time(t: SmlTime | None) -> bytes:
    """SML_Time: secIndex / timestamp as ``72 62 0n 65 <u32>``, localTimestamp with its two Integer16 offsets."""
    if t is None:
        return b"\x01"
    if t.kind == 3:
        inner = encode_list(
            (encode_uint(t.value, 4), encode_int(t.local_offset_min, 2), encode_int(t.season_offset_min, 2))
        )
        return encode_list((encode_uint(3, 1), inner))
    return encode_list((encode_uint(t.kind, 1), encode_uint(t.value, 4)))


def _entry(e: ListEntry) -> bytes:
    return encode_list(
        (
            encode_octets(e.obj_name),
            _u(e.status),
            encode_time(e.val_time),
            _u(e.unit, 1),
            _i8(e.scaler),
            encode_value(e.value),
            encode_octets(e.value_signature),
        )
    )


def _period(p: PeriodEntry) -> bytes:
    parts = (encode_octets(p.obj_name), _u(p.unit, 1), _i8(p.scaler), encode_value(p.value))
    return encode_list((*parts, encode_octets(p.value_signature)))


def _fields(body: Body) -> list[bytes]:
    o = encode_octets
    if isinstance(body, PublicOpenReq):
        req = (body.codepage, body.client_id, body.req_file_id, body.server_id, body.username, body.password)
        return [*(o(x) for x in req), _u(body.sml_version, 1)]
    if isinstance(body, PublicOpenRes):
        res = (body.codepage, body.client_id, body.req_file_id, body.server_id)
        return [*(o(x) for x in res), encode_time(body.ref_time), _u(body.sml_version, 1)]
    if isinstance(body, PublicCloseReq | PublicCloseRes):
        return [o(body.global_signature)]
    if isinstance(body, GetListRes):
        return [
            o(body.client_id), o(body.server_id), o(body.list_name), encode_time(body.act_sensor_time),
            encode_list(_entry(e) for e in body.entries), o(body.list_signature), encode_time(body.act_gateway_time),
        ]  # fmt: skip
    if isinstance(body, GetProfileListRes):
        return [
            o(body.server_id), encode_time(body.act_time), _u(body.reg_period, 4),
            encode_list(o(p) for p in body.tree_path), encode_time(body.val_time), _u(body.status, 8),
            encode_list(_period(p) for p in body.periods), o(body.raw_data), o(body.period_signature),
        ]  # fmt: skip
    if isinstance(body, AttentionRes):
        return [o(body.server_id), o(body.attention_no), o(body.message), _tree(body.details)]
    raise FrameError(f"SML encoder: not an SML body: {body!r:.80}")  # UnknownBody is handled by encode_body


def _tree(details: SmlValue) -> bytes:
    return b"\x01" if details is None else encode_value(details)


def encode_body(body: Body) -> bytes:
    """The messageBody choice: ``72 63 <tag> <body>`` (tags above 0xFFFF as Unsigned32)."""
    tag = body.tag if isinstance(body, UnknownBody) else body.TAG
    inner = encode_value(body.value) if isinstance(body, UnknownBody) else encode_list(_fields(body))
    return encode_list((encode_uint(tag, 2 if tag <= 0xFFFF else 4), inner))


def encode_message(message: SmlMessage, *, crc: str = "x25") -> bytes:
    """One message with its CRC (``crc``: ``x25``, ``x25-msb`` or ``kermit``) and EndOfSmlMsg."""
    head = b"\x76" + encode_octets(message.transaction_id)
    head += encode_uint(message.group_no, 1) + encode_uint(message.abort_on_error, 1) + encode_body(message.body)
    if crc == "kermit":
        wire = crc16_kermit(head).to_bytes(2, "big")
    else:
        wire = crc16_x25(head).to_bytes(2, "big" if crc == "x25-msb" else "little")
    return head + b"\x63" + wire + b"\x00"


def encode_messages(messages: Iterable[SmlMessage], *, crc: str = "x25") -> bytes:
    """The body of an SML file: its messages back to back (no transport)."""
    return b"".join(encode_message(m, crc=crc) for m in messages)


def encode_file(messages: Iterable[SmlMessage], *, crc: str = "x25") -> bytes:
    """A framed SML file as a meter pushes it: the messages inside the transport (escape, padding, CRC)."""
    return encode_transport(encode_messages(messages, crc=crc), crc=crc)
