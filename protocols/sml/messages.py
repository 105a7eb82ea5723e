"""SML messages (SML 1.04 clause 5 / BSI TR-03109-1 Anlage IV 5.1), decoded from an SML file body, sans-I/O.

An SML file is a sequence of messages, each a TLV list of six::

    76  transactionId (octet string) groupNo (u8) abortOnError (u8)
        messageBody: 72 <tag u16|u32> <body>     0x0101 PublicOpen.Res  0x0701 GetList.Res  0x0201 PublicClose.Res ...
        crc16 (u16)                               CRC-16/X-25 over the message from its 0x76 up to the crc16 TL
        00                                        EndOfSmlMsg

Bodies decoded here: PublicOpen.Req/.Res, PublicClose.Req/.Res, GetList.Res (SML_ListEntry: objName, status,
valTime, unit, scaler, value, valueSignature), GetProfileList.Res (SML_PeriodEntry) and Attention.Res. Any other
tag is kept as :class:`UnknownBody` with an ``unknown_message`` issue. A malformed message becomes an issue
(``bad_message``, ``bad_body``) and the parser resyncs on the next message; nothing here raises for bad input.
Padding ``00`` bytes between messages are skipped. A message whose CRC does not match is dropped with
``bad_message_crc`` in bare message bytes, where it is the only check; inside a transport frame whose CRC is good
(``trusted=True``) the bytes are as the meter sent them, so the message is kept with a ``message_crc_mismatch``
issue (seen in captures whose ids were edited before they were published).

Tolerated deviations: a valTime sent as a bare Unsigned32 without the SML_Time choice (read as secIndex), and a
message without its EndOfSmlMsg when the next message or the end of the file follows (libsml accepts both).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from amiflow.errors import FrameError
from amiflow.types import Issue

from .crc import crc_variant
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
from .tlv import TYPE_LIST, SmlValue, decode_value, read_tl

__all__ = ["parse_messages"]


def _bad(what: str, value: object) -> FrameError:
    return FrameError(f"SML: {what} has an unexpected value {value!r:.60}")


def _octets(v: SmlValue, what: str) -> bytes | None:
    if v is None or isinstance(v, bytes):
        return v
    raise _bad(what, v)


def _uint(v: SmlValue, what: str) -> int | None:
    if v is None or (isinstance(v, int) and not isinstance(v, bool)):
        return v
    raise _bad(what, v)


def _seq(v: SmlValue, n: int, what: str) -> tuple[SmlValue, ...]:
    if isinstance(v, tuple) and len(v) == n:
        return v
    raise _bad(f"{what} (a list of {n})", v)


def _time(v: SmlValue, what: str) -> SmlTime | None:
    if v is None:
        return None
    if isinstance(v, int) and not isinstance(v, bool):
        return SmlTime(1, v)  # a bare Unsigned32 without the SML_Time choice (seen by smllib's users): secIndex
    tag, inner = _seq(v, 2, what)
    if tag in (1, 2) and isinstance(inner, int) and not isinstance(inner, bool):
        return SmlTime(int(tag), inner)
    if tag == 3:
        ts, local, season = (_uint(x, what) for x in _seq(inner, 3, what))  # Unsigned32, Integer16, Integer16
        if ts is not None:
            return SmlTime(3, ts, local or 0, season or 0)
    raise _bad(what, v)


def _entry(v: SmlValue) -> ListEntry:
    name, status, val_time, unit, scaler, value, sig = _seq(v, 7, "SML_ListEntry")
    obj = _octets(name, "objName")
    if obj is None:
        raise _bad("objName", name)
    return ListEntry(
        obj, _uint(status, "status"), _time(val_time, "valTime"), _uint(unit, "unit"),
        _uint(scaler, "scaler"), value, _octets(sig, "valueSignature"),
    )  # fmt: skip


def _period(v: SmlValue) -> PeriodEntry:
    name, unit, scaler, value, sig = _seq(v, 5, "SML_PeriodEntry")
    obj = _octets(name, "objName")
    if obj is None:
        raise _bad("objName", name)
    return PeriodEntry(obj, _uint(unit, "unit"), _uint(scaler, "scaler"), value, _octets(sig, "valueSignature"))


def _items(v: SmlValue, what: str) -> tuple[SmlValue, ...]:
    if v is None:
        return ()
    if isinstance(v, tuple):
        return v
    raise _bad(what, v)


def _open_req(v: SmlValue) -> Body:
    codepage, client, req_file, server, user, password, version = _seq(v, 7, "PublicOpen.Req")
    return PublicOpenReq(
        _octets(codepage, "codepage"), _octets(client, "clientId"), _octets(req_file, "reqFileId"),
        _octets(server, "serverId"), _octets(user, "username"), _octets(password, "password"),
        _uint(version, "smlVersion"),
    )  # fmt: skip


def _open_res(v: SmlValue) -> Body:
    codepage, client, req_file, server, ref_time, version = _seq(v, 6, "PublicOpen.Res")
    return PublicOpenRes(
        _octets(codepage, "codepage"), _octets(client, "clientId"), _octets(req_file, "reqFileId"),
        _octets(server, "serverId"), _time(ref_time, "refTime"), _uint(version, "smlVersion"),
    )  # fmt: skip


def _close_req(v: SmlValue) -> Body:
    return PublicCloseReq(_octets(_seq(v, 1, "PublicClose.Req")[0], "globalSignature"))


def _close_res(v: SmlValue) -> Body:
    return PublicCloseRes(_octets(_seq(v, 1, "PublicClose.Res")[0], "globalSignature"))


def _get_list_res(v: SmlValue) -> Body:
    client, server, name, sensor, vals, sig, gateway = _seq(v, 7, "GetList.Res")
    entries = tuple(_entry(e) for e in _items(vals, "valList"))
    return GetListRes(
        _octets(client, "clientId"), _octets(server, "serverId"), _octets(name, "listName"),
        _time(sensor, "actSensorTime"), entries, _octets(sig, "listSignature"), _time(gateway, "actGatewayTime"),
    )  # fmt: skip


def _profile_list_res(v: SmlValue) -> Body:
    server, act, period, path, val_time, status, periods, raw, sig = _seq(v, 9, "GetProfileList.Res")
    tree: list[bytes] = []
    for p in _items(path, "parameterTreePath"):
        if not isinstance(p, bytes):
            raise _bad("parameterTreePath", p)
        tree.append(p)
    return GetProfileListRes(
        _octets(server, "serverId"), _time(act, "actTime"), _uint(period, "regPeriod"), tuple(tree),
        _time(val_time, "valTime"), _uint(status, "status"), tuple(_period(p) for p in _items(periods, "period_List")),
        _octets(raw, "rawdata"), _octets(sig, "periodSignature"),
    )  # fmt: skip


def _attention_res(v: SmlValue) -> Body:
    server, number, msg, details = _seq(v, 4, "Attention.Res")
    no = _octets(number, "attentionNo")
    if no is None:
        raise _bad("attentionNo", number)
    return AttentionRes(_octets(server, "serverId"), no, _octets(msg, "attentionMsg"), details)


_PARSERS: Final[dict[int, Callable[[SmlValue], Body]]] = {
    0x0100: _open_req,
    0x0101: _open_res,
    0x0200: _close_req,
    0x0201: _close_res,
    0x0701: _get_list_res,
    0x0401: _profile_list_res,
    0xFF01: _attention_res,
}


def _read_message(data: bytes, pos: int, quirks: bool) -> tuple[SmlMessage | Issue, int]:
    """One message at ``pos``: the message (or an issue for a good structure with a bad CRC/body), next position.

    Raises FrameError when the bytes at ``pos`` are not a message at all.
    """
    kind, count, p = read_tl(data, pos)
    if kind != TYPE_LIST or count != 6:
        raise FrameError(f"SML: byte {pos} does not start a message (a list of 6), TL {data[pos]:02x}")
    fields: list[SmlValue] = []
    crc_start = p
    for _ in range(5):
        crc_start = p
        value, p = decode_value(data, p, 1)
        fields.append(value)
    if p < len(data) and data[p] == 0x00:
        end = p + 1
    elif p == len(data) or data[p] == 0x76:
        end = p
    else:
        raise FrameError(f"SML: message at byte {pos} does not end with EndOfSmlMsg")
    tid, group, abort, body, crc = fields
    if not isinstance(tid, bytes) or not isinstance(body, tuple) or len(body) != 2:
        raise FrameError(f"SML: message at byte {pos} has no transactionId or messageBody")
    variant = "none"
    if crc is not None:
        if not isinstance(crc, int) or isinstance(crc, bool) or not 0 <= crc <= 0xFFFF:
            raise FrameError(f"SML: message at byte {pos} has a bad crc16 field")
        found = crc_variant(data[pos:crc_start], crc.to_bytes(2, "big"), quirks=quirks)
        variant = found or "mismatch"
    tag = body[0]
    if not isinstance(tag, int) or isinstance(tag, bool) or not isinstance(group, int) or not isinstance(abort, int):
        raise FrameError(f"SML: message at byte {pos} has a bad header")
    parser = _PARSERS.get(tag)
    try:
        parsed = parser(body[1]) if parser else UnknownBody(tag, body[1])
    except FrameError as exc:
        return Issue("bad_body", f"message at byte {pos}, body {tag:04x}: {exc}"), end
    return SmlMessage(tid, int(group), int(abort), parsed, variant), end


def parse_messages(
    body: bytes, *, crc_quirks: bool = True, trusted: bool = False
) -> tuple[list[SmlMessage], list[Issue]]:
    """All messages of an SML file body (``trusted``: its transport CRC was good) or of bare message bytes."""
    data = bytes(body)
    messages: list[SmlMessage] = []
    issues: list[Issue] = []
    pos = 0
    while pos < len(data):
        if data[pos] == 0x00:
            pos += 1
            continue
        try:
            item, pos = _read_message(data, pos, crc_quirks)
        except FrameError as exc:
            issues.append(Issue("bad_message", str(exc), raw=data[pos : pos + 64]))
            pos = _resync(data, pos + 1, crc_quirks)
            continue
        if isinstance(item, Issue):
            issues.append(item)
            continue
        if item.crc_variant == "mismatch":
            detail = f"message {item.transaction_id.hex()}: crc16 does not match"
            if not trusted:
                issues.append(Issue("bad_message_crc", detail + "; message dropped"))
                continue
            issues.append(Issue("message_crc_mismatch", detail + " (the transport CRC is good); message kept"))
        messages.append(item)
        if isinstance(item.body, UnknownBody):
            issues.append(Issue("unknown_message", f"message body {item.tag:04x} is not decoded; kept as raw"))
    return messages, issues


def _resync(data: bytes, start: int, quirks: bool) -> int:
    """The next position at or after ``start`` where a whole message parses, else the end.

    Only a ``76`` followed by an octet-string TL (the transactionId) is tried, which keeps hostile input linear
    in practice: a message never starts anywhere else.
    """
    pos = data.find(b"\x76", start)
    while pos >= 0:
        if pos + 1 < len(data) and data[pos + 1] & 0x70 == 0 and data[pos + 1] not in (0x00, 0x01):
            try:
                _read_message(data, pos, quirks)
                return pos
            except FrameError:
                pass
        pos = data.find(b"\x76", pos + 1)
    return len(data)
