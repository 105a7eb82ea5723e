"""SML messages: every supported body through the encoder and back, unknown bodies, CRC policy, resync, bare bodies."""

from __future__ import annotations

import pytest

from protocols.sml import (
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
    Typed,
    UnknownBody,
    encode_message,
    encode_messages,
    parse_messages,
)
from protocols.sml.model import Body

SERVER = bytes.fromhex("0a01454d480000003039")
OBIS_180 = bytes.fromhex("0100010800ff")

BODIES: list[Body] = [
    PublicOpenReq(None, b"\x01\x02\x03\x04\x05\x06", b"\x12\x34", SERVER, b"admin", b"1234", 1),
    PublicOpenRes(None, None, b"\x0a\x0b", SERVER, SmlTime(1, 12345), None),
    PublicCloseReq(),
    PublicCloseRes(b"\x99" * 4),
    GetListRes(
        None,
        SERVER,
        bytes.fromhex("0100620affff"),
        SmlTime(2, 1_767_226_500),
        (
            ListEntry(bytes.fromhex("8181c78203ff"), value=b"EMH"),
            ListEntry(OBIS_180, 0x182, None, 30, -1, 123456789),
            ListEntry(bytes.fromhex("0100100700ff"), None, SmlTime(3, 1_767_226_500, 60, 60), 27, -2, -3000),
            ListEntry(bytes.fromhex("8181c78205ff"), value=b"\x42" * 48),
        ),
        None,
        SmlTime(1, 7),
    ),
    GetProfileListRes(
        SERVER,
        SmlTime(2, 1_767_226_500),
        900,
        (bytes.fromhex("0100630100ff"),),
        SmlTime(2, 1_767_226_500),
        0,
        (PeriodEntry(OBIS_180, 30, -1, 12345678), PeriodEntry(bytes.fromhex("0100020800ff"), 30, -1, 5)),
    ),
    AttentionRes(SERVER, bytes.fromhex("8181c7c7fe03"), b"no list", None),
    UnknownBody(0x0700, (None, SERVER, None, None, bytes.fromhex("0100620affff"))),
]


@pytest.mark.parametrize("body", BODIES, ids=lambda b: type(b).__name__)
def test_every_body_round_trips(body: Body) -> None:
    message = SmlMessage(b"\x00\x00\x00\x2a", 0, 0, body)
    messages, issues = parse_messages(encode_message(message))
    assert messages == [message]
    assert [i.code for i in issues] == (["unknown_message"] if isinstance(body, UnknownBody) else [])


def test_typed_values_decode_to_plain_ints() -> None:
    entry = ListEntry(OBIS_180, Typed(0x1C0104, False, 3), None, 30, -1, Typed(20431047, True, 8))
    body = GetListRes(None, SERVER, None, None, (entry,))
    raw = encode_message(SmlMessage(b"\x01\x02", 0, 0, body))
    assert bytes.fromhex("641c0104") in raw and bytes.fromhex("59000000000137c0c7") in raw
    (message,), _ = parse_messages(raw)
    assert isinstance(message.body, GetListRes)
    assert message.body.entries[0].status == 0x1C0104 and message.body.entries[0].value == 20431047


def test_message_crc_policy() -> None:
    good = encode_message(SmlMessage(b"\x01\x02", 0, 0, PublicCloseRes()))
    bad = good[:-3] + bytes([good[-3] ^ 0xFF]) + good[-2:]
    messages, issues = parse_messages(bad)
    assert messages == [] and [i.code for i in issues] == ["bad_message_crc"]
    messages, issues = parse_messages(bad, trusted=True)
    assert len(messages) == 1 and messages[0].crc_variant == "mismatch"
    assert [i.code for i in issues] == ["message_crc_mismatch"]


@pytest.mark.parametrize("variant", ["x25", "x25-msb", "kermit"])
def test_message_crc_variants(variant: str) -> None:
    (message,), issues = parse_messages(encode_message(SmlMessage(b"\x07", 0, 0, PublicCloseRes()), crc=variant))
    assert not issues and message.crc_variant in (variant, "x25")


def test_garbage_between_messages_resyncs() -> None:
    one = encode_message(SmlMessage(b"\x01", 0, 0, PublicCloseRes()))
    two = encode_message(SmlMessage(b"\x02", 0, 0, PublicCloseRes()))
    messages, issues = parse_messages(one + b"\x76\x76\x05\xff\x33" + b"\x00\x00" + two)
    assert [m.transaction_id for m in messages] == [b"\x01", b"\x02"]
    assert [i.code for i in issues] == ["bad_message"]


def test_missing_end_of_message_is_tolerated_before_the_next_message() -> None:
    one = encode_message(SmlMessage(b"\x01", 0, 0, PublicCloseRes()))
    two = encode_message(SmlMessage(b"\x02", 0, 0, PublicCloseRes()))
    messages, issues = parse_messages(one[:-1] + two[:-1])
    assert len(messages) == 2 and not issues


def test_a_body_that_does_not_fit_its_type_is_an_issue() -> None:
    body = UnknownBody(0x0701, (1, 2, 3))  # GetList.Res must be a list of 7
    (issue,) = parse_messages(encode_message(SmlMessage(b"\x01", 0, 0, body)))[1]
    assert issue.code == "bad_body" and "list of 7" in issue.detail


def test_time_choices() -> None:
    assert SmlTime(2, 1_767_226_500).epoch_s == 1_767_226_500
    assert SmlTime(3, 1_767_226_500, 60, 0).epoch_s == 1_767_226_500
    assert SmlTime(1, 1_767_226_500).epoch_s is None  # a seconds counter, not a time
    assert SmlTime(2, 1234).epoch_s is None  # an unset clock


def test_bare_messages_of_a_file() -> None:
    body = encode_messages([SmlMessage(b"\x01", 0, 0, b) for b in BODIES[1:5]])
    messages, issues = parse_messages(body)
    assert [type(m.body) for m in messages] == [PublicOpenRes, PublicCloseReq, PublicCloseRes, GetListRes]
    assert not issues
