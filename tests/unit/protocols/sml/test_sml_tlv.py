"""SML TLV fields: single- and multi-byte type-length, integers of every width, octet strings, lists, end marker."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amiflow.errors import FrameError
from protocols.sml.tlv import (
    END_OF_MESSAGE,
    MAX_DEPTH,
    Typed,
    decode_tlv,
    decode_value,
    encode_int,
    encode_list,
    encode_octets,
    encode_tl,
    encode_uint,
    encode_value,
    read_tl,
)


@pytest.mark.parametrize(
    ("raw", "kind", "length", "after"),
    [
        ("0b", 0, 11, 1),
        ("8302", 0, 0x32, 2),  # a 48-byte public key: 0x32 = 48 + 2 TL bytes
        ("f104", 7, 0x14, 2),  # a list of 20 (Holley's long valList)
        ("810f", 0, 0x1F, 2),
        ("82800f", 0, 0x20F, 3),
        ("77", 7, 7, 1),
        ("65", 6, 5, 1),
    ],
)
def test_read_tl(raw: str, kind: int, length: int, after: int) -> None:
    assert read_tl(bytes.fromhex(raw), 0) == (kind, length, after)


def test_encode_tl_is_the_inverse() -> None:
    assert encode_tl(0, 0x32, 2) == bytes.fromhex("8302")
    assert encode_tl(7, 20, 2) == bytes.fromhex("f104")
    with pytest.raises(FrameError):
        encode_tl(0, 16, 1)


@pytest.mark.parametrize("size", [0, 1, 13, 14, 15, 48, 253, 254, 255, 4000])
def test_octet_strings_of_every_length_class(size: int) -> None:
    data = bytes(range(256)) * 16
    value = data[:size]
    assert decode_tlv(encode_octets(value)) == value


def test_absent_optional_and_end_of_message() -> None:
    assert decode_tlv(b"\x01") is None
    assert decode_tlv(encode_octets(None)) is None
    assert decode_tlv(b"\x00") is END_OF_MESSAGE


@pytest.mark.parametrize("width", range(1, 9))
def test_integers_of_every_width(width: int) -> None:
    top = (1 << (8 * width - 1)) - 1
    for v in (0, 1, -1, top, -top - 1):
        raw = encode_int(v, width)
        assert raw[0] == 0x50 | (width + 1) and decode_tlv(raw) == v
    for u in (0, 1, (1 << (8 * width)) - 1):
        raw = encode_uint(u, width)
        assert raw[0] == 0x60 | (width + 1) and decode_tlv(raw) == u


def test_odd_widths_seen_in_meters() -> None:
    assert decode_tlv(bytes.fromhex("560009247a55")) == 0x0009247A55  # EMH: 1.8.1 as a 5-byte Integer
    assert decode_tlv(bytes.fromhex("64000182")) == 0x182  # a 3-byte status
    assert decode_tlv(bytes.fromhex("53ffe2")) == -30  # a negative Integer16
    assert decode_tlv(bytes.fromhex("4201")) is True


@settings(max_examples=200, derandomize=True, deadline=None)
@given(st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1))
def test_smallest_width_round_trip(v: int) -> None:
    assert decode_tlv(encode_value(v)) == v


def test_typed_pins_the_wire_type() -> None:
    assert encode_value(Typed(5, signed=True, width=4)) == bytes.fromhex("5500000005")
    assert encode_value(Typed(5, signed=False, width=2)) == bytes.fromhex("630005")
    with pytest.raises(FrameError):
        encode_value(Typed(256, signed=False, width=1))
    with pytest.raises(FrameError):
        encode_int(128, 1)


def test_lists_nest_and_round_trip() -> None:
    value = (b"\x01\x00", None, (1, -2, (True, b"x" * 20)), tuple(range(20)))
    assert decode_tlv(encode_value(value)) == value
    assert encode_list([]) == b"\x70"


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ("", "truncated"),
        ("83", "truncated multi-byte"),
        ("0520", "runs past the end"),
        ("6a0102030405060708090a", "9-byte unsigned"),
        ("51", "0-byte integer"),
        ("4300ff", "2-byte boolean"),
        ("2201", "unknown type"),
        ("82f2", "has a type"),
        ("72 00 01", "EndOfSmlMsg inside a list"),
        ("7f", "cannot fit"),
        ("8000", "multi-byte TL of length 0"),
        ("0101", "bytes after the element"),
    ],
)
def test_malformed_raises_frame_error(raw: str, match: str) -> None:
    with pytest.raises(FrameError, match=match):
        decode_tlv(bytes.fromhex(raw.replace(" ", "")))


def test_nesting_is_bounded() -> None:
    deep = b"\x71" * (MAX_DEPTH + 5) + b"\x01"
    with pytest.raises(FrameError, match="nested deeper"):
        decode_value(deep)
