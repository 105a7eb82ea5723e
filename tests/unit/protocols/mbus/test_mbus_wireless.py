"""Wireless M-Bus (EN 13757-4, OMS): CRC-16/EN-13757, formats A and B round-trip, mode 5 encryption round-trip
with per-meter keys, the extended link layer, and the receiver's hex-line and raw streams."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amiflow.errors import FrameError
from protocols.mbus import (
    DeviceHeader,
    FrameFault,
    KeyRing,
    RawFrame,
    Telegram,
    WmbusFrame,
    WmbusReceiver,
    build_wmbus,
    crc16_en13757,
    decode_wmbus,
    encode_record,
    encrypt_mode5,
)
from protocols.mbus.header import encode_manufacturer

ADDRESS = encode_manufacturer("KAM") + bytes.fromhex("78563412") + bytes((0x1B, 0x16))
RECORDS = encode_record(b"\x13", 123_456) + encode_record(b"\x59", 2_150, field=0x02)
KEY = bytes(range(16))


def test_crc_check_value() -> None:
    assert crc16_en13757(b"123456789") == 0xC2B7  # CRC-16/EN-13757 catalogue check value


@settings(max_examples=200, derandomize=True)
@given(data=st.binary(min_size=1, max_size=240), fmt=st.sampled_from(["A", "B", "none"]))
def test_formats_round_trip(data: bytes, fmt: str) -> None:
    raw = build_wmbus(0x44, ADDRESS, 0x78, data, fmt=fmt)
    frame = WmbusFrame.from_bytes(raw, fmt)
    assert (frame.c, frame.ci, frame.data, frame.link.ident, frame.link.manufacturer) == (
        0x44, 0x78, data, "12345678", "KAM",
    )  # fmt: skip
    if fmt != "none":
        assert WmbusFrame.from_bytes(raw).fmt == fmt  # auto-detected by length and CRC


def test_a_bad_crc_is_a_frame_error() -> None:
    raw = bytearray(build_wmbus(0x44, ADDRESS, 0x78, RECORDS, fmt="A"))
    raw[14] ^= 0x01
    with pytest.raises(FrameError):
        WmbusFrame.from_bytes(bytes(raw), "A")


def _mode5_frame(key: bytes = KEY) -> bytes:
    plain = b"\x2f\x2f" + RECORDS
    blocks = (len(plain) + 15) // 16
    header = DeviceHeader("12345678", "KAM", 0x1B, 0x16, access=0x42, config=0x0500 | blocks << 4)
    assert header.address == ADDRESS  # the IV: M(2) A(6) ACC x 8
    short = bytes((0x42, 0x00)) + header.config.to_bytes(2, "little")
    return build_wmbus(0x44, ADDRESS, 0x7A, short + encrypt_mode5(key, header, plain), fmt="A")


def test_mode5_round_trip_with_the_meters_key() -> None:
    raw = _mode5_frame()
    telegram = decode_wmbus(raw, keys=KeyRing({"12345678": KEY.hex()}))
    assert telegram.decrypted and not telegram.issues
    assert [(r.quantity, r.value) for r in telegram.records] == [("volume", 123.456), ("flow_temperature", 21.5)]
    assert [i.code for i in decode_wmbus(raw).issues] == ["encrypted"]
    assert [i.code for i in decode_wmbus(raw, keys=KeyRing({"KAM:12345678": bytes(16)})).issues] == ["bad_key"]


def test_keyring_hides_keys_and_checks_length() -> None:
    ring = KeyRing({"12345678": KEY})
    assert KEY.hex() not in repr(ring) and len(ring) == 1
    with pytest.raises(Exception, match="16 bytes"):
        KeyRing({"1": "00"})


def test_extended_link_layer() -> None:
    ell = bytes((0x20, 0x11)) + bytes((0x78,)) + RECORDS  # CI 8C: CC ACC, then CI 78
    telegram = decode_wmbus(build_wmbus(0x44, ADDRESS, 0x8C, ell, fmt="B"))
    assert [r.value for r in telegram.records] == [123.456, 21.5]
    ctr = bytes((0x20, 0x11)) + (1 << 29).to_bytes(4, "little") + b"\x00\x00" + b"\x78" + RECORDS
    assert [i.code for i in decode_wmbus(build_wmbus(0x44, ADDRESS, 0x8D, ctr)).issues] == ["unsupported_security"]


def _drain(rx: WmbusReceiver) -> list[Telegram | FrameFault]:
    out = []
    while (event := rx.next_event()) is not None:
        out.append(event)
    return out


def test_receiver_hex_lines() -> None:
    frame = build_wmbus(0x44, ADDRESS, 0x78, RECORDS, fmt="none")
    rx = WmbusReceiver("hex")
    text = f"# a log\nT1;1;1;2024-01-01 00:00:00.000;97;148;12345678;0x{frame.hex()}\nzz\n{frame.hex(' ')}\n"
    for i in range(0, len(text), 7):  # arrives in pieces
        rx.receive_data(text[i : i + 7].encode())
    events = _drain(rx)
    assert [type(e) for e in events] == [Telegram, Telegram] and rx.skipped > 0


def test_receiver_raw_stream_resyncs() -> None:
    frame = build_wmbus(0x44, ADDRESS, 0x78, RECORDS, fmt="A")
    rx = WmbusReceiver("raw")
    rx.receive_data(b"\x00\x13\x99" + frame + frame[:-1] + b"\x00" + frame)
    rx.receive_data(b"")
    events = _drain(rx)
    assert [type(e) for e in events] == [Telegram, Telegram] and rx.skipped > 0


def test_receiver_hands_out_raw_frames_undecoded() -> None:
    frame = build_wmbus(0x44, ADDRESS, 0x78, RECORDS, fmt="A")
    rx = WmbusReceiver("hex")
    rx.receive_data(f"2026-01-02T03:04:05Z;{frame.hex()}\n{frame[:-1].hex()}00\n".encode())
    assert rx.next_frame() == RawFrame(frame, f"2026-01-02T03:04:05Z;{frame.hex()}".encode())
    second = rx.next_frame()  # a bad CRC is the decoder's to find, not the line reader's
    assert isinstance(second, RawFrame) and second.data == frame[:-1] + b"\x00"
    raw = WmbusReceiver("raw")
    raw.receive_data(b"\x01\x02" + frame)
    raw.receive_data(b"")
    assert raw.next_frame() == RawFrame(frame) and raw.skipped == 2
