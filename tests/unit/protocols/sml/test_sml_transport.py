"""SML transport: framing, CRC variants, escaping, padding, and the streaming decoder's resync and fault counts."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amiflow.errors import FrameError
from protocols.sml import NEED_DATA, FrameFault, SmlFrame, SmlStreamDecoder, crc16_kermit, crc16_x25, from_hex
from protocols.sml.crc import crc_variant
from protocols.sml.transport import encode_transport

DATA = Path(__file__).parents[3] / "data" / "sml"


def _events(dec: SmlStreamDecoder) -> list[SmlFrame | FrameFault]:
    out: list[SmlFrame | FrameFault] = []
    while (event := dec.next_event()) is not NEED_DATA:
        assert event is not None
        out.append(event)
    return out


def _decode_all(data: bytes, **kw: object) -> tuple[list[SmlFrame | FrameFault], SmlStreamDecoder]:
    dec = SmlStreamDecoder(**kw)  # type: ignore[arg-type]
    dec.receive_data(data)
    dec.receive_data(b"")
    return _events(dec), dec


def test_crc_check_values() -> None:
    assert crc16_x25(b"123456789") == 0x906E
    assert crc16_kermit(b"123456789") == 0x2189


# The three transport vectors of sml-rs (felixwrt/sml-rs, MIT OR Apache-2.0, src/transport.rs tests).
@pytest.mark.parametrize(
    ("wire", "body"),
    [
        ("1b1b1b1b 01010101 12345678 1b1b1b1b 1a00b87b", "12345678"),
        ("1b1b1b1b 01010101 12345600 1b1b1b1b 1a0191a5", "123456"),
        ("1b1b1b1b 01010101 12 1b1b1b1b 1b1b1b1b 000000 1b1b1b1b 1a03be25", "121b1b1b1b"),  # escaped off the grid
    ],
)
def test_sml_rs_vectors(wire: str, body: str) -> None:
    frame = SmlFrame.from_bytes(bytes.fromhex(wire.replace(" ", "")))
    assert frame.body.hex() == body
    assert frame.crc_variant == "x25"


def test_encoder_escapes_aligned_groups_and_pads() -> None:
    assert encode_transport(bytes.fromhex("12345678")).hex() == "1b1b1b1b01010101123456781b1b1b1b1a00b87b"
    wire = encode_transport(b"\x1b" * 4 + b"\x01")
    assert wire[8:16] == b"\x1b" * 8 and wire[-4:-2] == b"\x1a\x03"
    assert SmlFrame.from_bytes(wire).body == b"\x1b" * 4 + b"\x01"


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.lists(st.sampled_from([b"\x1b", b"\x1b" * 4, b"\x00", b"\x01", b"\x1a", b"\x76", b"\xff"]), max_size=40))
def test_round_trip_with_escape_runs(parts: list[bytes]) -> None:
    body = b"".join(parts)
    assert SmlFrame.from_bytes(encode_transport(body)).body == body


@pytest.mark.parametrize("variant", ["x25", "x25-msb", "kermit"])
def test_crc_variants(variant: str) -> None:
    wire = encode_transport(b"\x76\x05\x01\x02\x03\x05", crc=variant)
    assert wire[-1] != wire[-2]  # else the byte orders cannot be told apart
    assert SmlFrame.from_bytes(wire).crc_variant == variant
    if variant != "x25":
        with pytest.raises(FrameError, match="CRC mismatch"):
            SmlFrame.from_bytes(wire, crc_quirks=False)


def test_crc_variant_names_the_byte_order() -> None:
    data = b"\x1b\x1b\x1b\x1b\x01\x01\x01\x01\x12\x34\x56\x78\x1b\x1b\x1b\x1b\x1a\x00"
    x25 = crc16_x25(data)
    assert crc_variant(data, x25.to_bytes(2, "little")) == "x25"
    assert crc_variant(data, x25.to_bytes(2, "big")) == "x25-msb"
    assert crc_variant(data, x25.to_bytes(2, "big"), quirks=False) is None
    assert crc_variant(data, bytes(2)) is None


def test_every_split_of_a_capture_gives_the_same_frames() -> None:
    raw = from_hex((DATA / "iskra_mt631_sml-rs.hex").read_bytes())
    assert raw is not None
    whole, _ = _decode_all(raw)
    assert len(whole) == 5 and all(isinstance(e, SmlFrame) for e in whole)
    for cut in range(1, len(raw)):
        dec = SmlStreamDecoder()
        dec.receive_data(raw[:cut])
        events = _events(dec)
        dec.receive_data(raw[cut:])
        events += _events(dec)
        assert events == whole, cut


def test_byte_by_byte_never_hangs_and_finds_every_frame() -> None:
    raw = (DATA / "dnt_smartmeter-obis.bin").read_bytes()
    dec = SmlStreamDecoder()
    events: list[SmlFrame | FrameFault] = []
    for i in range(len(raw)):
        dec.receive_data(raw[i : i + 1])
        events += _events(dec)
    dec.receive_data(b"")
    events += _events(dec)
    assert [type(e).__name__ for e in events] == ["SmlFrame", "SmlFrame", "FrameFault"]
    assert isinstance(events[-1], FrameFault) and events[-1].code == "truncated"
    assert (dec.frames, dec.faults) == (2, 1)


def test_garbage_between_frames_is_skipped_and_counted() -> None:
    one = encode_transport(bytes.fromhex("76050102030462006200"))
    noise = b"\x1b\x1b\x00garbage\x1b\x1b\x1b\x01\x01\xff" * 3
    events, dec = _decode_all(noise + one + noise + one + noise)
    assert [type(e) for e in events] == [SmlFrame, SmlFrame]
    assert dec.skipped == 3 * len(noise)


def test_bad_crc_is_a_counted_fault_and_the_next_frame_decodes() -> None:
    good = encode_transport(bytes.fromhex("76050102030462006200"))
    bad = bytearray(good)
    bad[10] ^= 0x40
    events, dec = _decode_all(bytes(bad) + good)
    assert isinstance(events[0], FrameFault) and events[0].code == "bad_crc"
    assert isinstance(events[1], SmlFrame)
    assert (dec.frames, dec.faults) == (1, 1)


def test_restart_mid_frame_is_truncated_even_off_the_grid() -> None:
    good = encode_transport(bytes.fromhex("760501020304620062007263"))
    cut = good[:13]  # a meter that restarted 5 bytes into the data: the new start is not 4-aligned
    events, _ = _decode_all(cut + good)
    assert isinstance(events[0], FrameFault) and events[0].code == "truncated"
    assert isinstance(events[1], SmlFrame) and events[1].raw == good


def test_end_sequence_off_the_grid_is_data_unless_its_crc_matches() -> None:
    body = b"\x01\x1b\x1b\x1b\x1b\x1a\x00\x12\x34\x00\x00\x00"  # an unescaped 1b1b1b1b 1a in the data, unaligned
    assert SmlFrame.from_bytes(encode_transport(body)).body == body


def test_bad_escape_bad_padding_and_too_long() -> None:
    escape = b"\x1b\x1b\x1b\x1b\x01\x01\x01\x01" + b"\x1b\x1b\x1b\x1b\x02\x00\x00\x00"
    events, _ = _decode_all(escape)
    assert isinstance(events[0], FrameFault) and events[0].code == "bad_escape"

    frame = bytearray(b"\x1b\x1b\x1b\x1b\x01\x01\x01\x01\x11\x22\x33\x44\x1b\x1b\x1b\x1b\x1a\x05")
    frame += crc16_x25(frame).to_bytes(2, "little")
    events, _ = _decode_all(bytes(frame))
    assert isinstance(events[0], FrameFault) and events[0].code == "bad_padding"

    dec = SmlStreamDecoder(max_frame_bytes=256)
    dec.receive_data(b"\x1b\x1b\x1b\x1b\x01\x01\x01\x01" + b"\x55" * 400)
    events = _events(dec)
    assert isinstance(events[0], FrameFault) and events[0].code == "too_long"
    assert len(dec._buf) < 512


def test_dzg_four_zero_padding_bytes_are_accepted() -> None:
    raw = from_hex((DATA / "dzg_smllib_frame1.hex").read_bytes())
    assert raw is not None and raw[-3] == 4
    assert len(SmlFrame.from_bytes(raw).body) == len(raw) - 8 - 4 - 8


def test_from_bytes_wants_exactly_one_frame() -> None:
    one = encode_transport(b"\x76\x01\x02\x03")
    for bad in (one + one, b"x" + one, one[:-1], b""):
        with pytest.raises(FrameError):
            SmlFrame.from_bytes(bad)


def test_raise_faults_raises_frame_error() -> None:
    dec = SmlStreamDecoder(raise_faults=True)
    dec.receive_data(b"\x1b\x1b\x1b\x1b\x01\x01\x01\x01\x00\x00\x00\x00\x1b\x1b\x1b\x1b\x1a\x00\x00\x00")
    with pytest.raises(FrameError, match="CRC"):
        dec.next_event()
