"""EN 13757-2 link layer: frames round-trip, a stream split at every byte boundary gives the same frames, garbage
resyncs, a bad checksum is a fault, and the strict entry points raise FrameError."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amiflow.errors import FrameError
from protocols.mbus import Ack, FrameFault, LongFrame, MbusStreamDecoder, ShortFrame, checksum, parse_frame

REQ_UD2 = bytes.fromhex("105b015c16")
RSP = LongFrame(0x08, 1, 0x72, bytes.fromhex("78563412242814070000000004130a000000"))


def _events(chunks: list[bytes]) -> list[object]:
    dec = MbusStreamDecoder()
    out: list[object] = []
    for chunk in chunks:
        dec.receive_data(chunk)
        while (event := dec.next_event()) is not None:
            out.append(event)
    dec.receive_data(b"")
    while (event := dec.next_event()) is not None:
        out.append(event)
    return out


def test_frames_round_trip() -> None:
    assert ShortFrame.from_bytes(REQ_UD2) == ShortFrame(0x5B, 1)
    assert ShortFrame(0x5B, 1).to_bytes() == REQ_UD2
    assert parse_frame(b"\xe5") == Ack()
    raw = RSP.to_bytes()
    assert raw[:4] == bytes((0x68, 21, 21, 0x68)) and raw[-1] == 0x16 and raw[-2] == checksum(raw[4:-2])
    assert LongFrame.from_bytes(raw) == RSP and RSP.is_rsp_ud
    control = LongFrame(0x53, 0xFE, 0x51)
    assert LongFrame.from_bytes(control.to_bytes()) == control


def test_every_split_gives_the_same_frames() -> None:
    stream = b"\xe5" + REQ_UD2 + RSP.to_bytes() + b"\xe5"
    want = [Ack(), ShortFrame(0x5B, 1), RSP, Ack()]
    for cut in range(len(stream) + 1):
        assert _events([stream[:cut], stream[cut:]]) == want
    assert _events([bytes([b]) for b in stream]) == want


def test_garbage_is_skipped_and_a_bad_checksum_is_a_fault() -> None:
    bad = bytearray(RSP.to_bytes())
    bad[-2] ^= 0xFF
    events = _events([b"\x00\x33\x99" + bytes(bad) + b"\xaa" + RSP.to_bytes()])
    faults = [e for e in events if isinstance(e, FrameFault)]
    assert faults and faults[0].code == "bad_checksum"
    assert events[-1] == RSP


def test_truncated_at_the_end_of_the_stream() -> None:
    events = _events([RSP.to_bytes()[:-3]])
    assert isinstance(events[-1], FrameFault) and events[-1].code == "truncated"


@pytest.mark.parametrize("raw", [b"", b"\x10\x5b\x01\x00\x16", b"\x68\x03\x04\x68", REQ_UD2 + b"\xe5", b"\x00"])
def test_strict_parse_raises_frame_error(raw: bytes) -> None:
    with pytest.raises(FrameError):
        parse_frame(raw)


def test_long_frame_too_long() -> None:
    with pytest.raises(FrameError):
        LongFrame(0x08, 1, 0x72, bytes(253))


@settings(max_examples=200, derandomize=True)
@given(
    c=st.integers(0, 255), a=st.integers(0, 255), ci=st.integers(0, 255), data=st.binary(max_size=252),
    cuts=st.lists(st.integers(0, 300), max_size=4),
)  # fmt: skip
def test_long_frames_round_trip_through_any_split(c: int, a: int, ci: int, data: bytes, cuts: list[int]) -> None:
    frame = LongFrame(c, a, ci, data)
    raw = frame.to_bytes()
    points = sorted({min(x, len(raw)) for x in cuts})
    chunks = [raw[i:j] for i, j in zip([0, *points], [*points, len(raw)], strict=True)]
    assert _events(chunks) == [frame]
