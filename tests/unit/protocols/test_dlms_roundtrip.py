"""Hypothesis round-trips of the DLMS codecs: A-XDR values, HDLC frames, wrapper frames, xDLMS APDUs; truncated
values always raise FrameError (bounded decoding), never hang or return a wrong value."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amiflow.errors import FrameError
from amiflow.types import Obis
from protocols.dlms import axdr
from protocols.dlms.cosem import DateTime, Deviation
from protocols.dlms.hdlc import NEED_DATA, HdlcAddress, HdlcFrame, HdlcFramer
from protocols.dlms.profile_generic import decode_profile
from protocols.dlms.wrapper import WrapperFrame, WrapperFramer
from protocols.dlms.xdlms import AccessSelection, AttributeDescriptor, GetRequest, GetResponse, parse_xdlms

_INTS = [
    (axdr.Integer, -128, 127),
    (axdr.Long, -(2**15), 2**15 - 1),
    (axdr.DoubleLong, -(2**31), 2**31 - 1),
    (axdr.Long64, -(2**63), 2**63 - 1),
    (axdr.Unsigned, 0, 255),
    (axdr.LongUnsigned, 0, 2**16 - 1),
    (axdr.DoubleLongUnsigned, 0, 2**32 - 1),
    (axdr.Long64Unsigned, 0, 2**64 - 1),
    (axdr.Enum, 0, 255),
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    *[st.integers(lo, hi).map(cls) for cls, lo, hi in _INTS],
    st.floats(allow_nan=False, width=32).map(axdr.Float32),
    st.floats(allow_nan=False).map(axdr.Float64),
    st.binary(max_size=300),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
    st.text(max_size=20).map(axdr.Utf8String),
    st.text(alphabet="01", max_size=40).map(axdr.BitString),
    st.binary(min_size=12, max_size=12).map(lambda b: axdr.Raw(axdr.Tag.DATE_TIME, b)),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.lists(inner, max_size=6).map(tuple)),
    max_leaves=30,
)


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@given(values)
@settings(max_examples=300, deadline=None)
def test_axdr_round_trip(value: Any) -> None:
    raw = axdr.encode(value)
    back = axdr.decode(raw)
    assert _same(back, value)
    assert axdr.encode(back) == raw


@given(values)
@settings(max_examples=100, deadline=None)
def test_axdr_truncation_raises(value: Any) -> None:
    raw = axdr.encode(value)
    for cut in range(len(raw)):
        with pytest.raises(FrameError):
            axdr.decode(raw[:cut])


@given(st.binary(max_size=64))
@settings(max_examples=300, deadline=None)
def test_axdr_garbage_is_bounded(data: bytes) -> None:
    with contextlib.suppress(FrameError):
        axdr.decode(data)


def test_axdr_depth_and_length_bounds() -> None:
    deep = b"\x01\x01" * (axdr.MAX_DEPTH + 2) + b"\x00"
    with pytest.raises(FrameError, match="deep"):
        axdr.decode(deep)
    with pytest.raises(FrameError, match="elements announced"):
        axdr.decode(b"\x01\x84\x7f\xff\xff\xff\x00")
    with pytest.raises(ValueError):
        axdr.encode(5)  # a plain int has no wire type
    assert axdr.encode_length(300) == b"\x82\x01\x2c"
    assert axdr.decode_length(b"\x82\x01\x2c", 0) == (300, 3)


addresses = st.one_of(
    st.integers(0, 0x7F).map(HdlcAddress),
    st.tuples(st.integers(0, 0x7F), st.integers(0, 0x7F)).map(lambda t: HdlcAddress(t[0], t[1], 2)),
    st.tuples(st.integers(0, 0x3FFF), st.integers(0, 0x3FFF)).map(lambda t: HdlcAddress(t[0], t[1], 4)),
)
controls = st.one_of(
    st.integers(0, 255).filter(lambda c: c & 1 == 0),  # I-frames
    st.integers(0, 7).map(lambda nr: (nr << 5) | 0x11),  # RR
    st.sampled_from([0x93, 0x73, 0x53, 0x1F, 0x97, 0x13]),
)


@given(addresses, addresses, controls, st.binary(max_size=200), st.booleans())
@settings(max_examples=300, deadline=None)
def test_hdlc_frame_round_trip_and_split(
    dest: HdlcAddress, src: HdlcAddress, control: int, info: bytes, seg: bool
) -> None:
    frame = HdlcFrame(dest, src, control, info, segmented=seg)
    raw = frame.to_bytes()
    assert HdlcFrame.from_bytes(raw) == frame
    stream = raw + raw
    for cut in (1, len(raw) // 2, len(raw), len(raw) + 3):
        framer = HdlcFramer()
        got = []
        for part in (stream[:cut], stream[cut:]):
            framer.receive_data(part)
            while (event := framer.next_event()) is not NEED_DATA:
                got.append(event)
        assert got == [frame, frame]


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(min_size=1, max_size=500))
@settings(max_examples=200, deadline=None)
def test_wrapper_round_trip(source: int, dest: int, apdu: bytes) -> None:
    frame = WrapperFrame(source, dest, apdu)
    assert WrapperFrame.from_bytes(frame.to_bytes()) == frame
    framer = WrapperFramer()
    raw = frame.to_bytes()
    for b in raw[:-1]:
        framer.receive_data(bytes((b,)))
        assert framer.next_event() is NEED_DATA
    framer.receive_data(raw[-1:])
    assert framer.next_event() == frame


obis = st.tuples(*[st.integers(0, 255)] * 6).map(lambda t: Obis(*t))
descriptors = st.builds(AttributeDescriptor, st.integers(0, 0xFFFF), obis, st.integers(-128, 127))


@given(st.integers(0, 255), st.lists(st.tuples(descriptors, st.booleans()), min_size=1, max_size=5))
@settings(max_examples=200, deadline=None)
def test_get_request_round_trip(iid: int, items: list[tuple[AttributeDescriptor, bool]]) -> None:
    full = tuple(
        (d, AccessSelection(2, (axdr.DoubleLongUnsigned(1), axdr.DoubleLongUnsigned(0))) if s else None)
        for d, s in items
    )
    kind = 1 if len(full) == 1 else 3
    req = GetRequest(kind, iid, full)
    assert parse_xdlms(req.to_bytes()) == req


@given(st.integers(0, 255), st.lists(st.one_of(values.map(axdr.encode), st.integers(0, 250)), min_size=1, max_size=4))
@settings(max_examples=200, deadline=None)
def test_get_response_round_trip(iid: int, results: list[bytes | int]) -> None:
    items = tuple((r, None) if isinstance(r, bytes) else (None, r) for r in results)
    resp = GetResponse(1 if len(items) == 1 else 3, iid, items)
    raw = resp.to_bytes()
    assert parse_xdlms(raw) == resp
    for cut in range(3, len(raw)):
        try:
            parse_xdlms(raw[:cut])
        except FrameError:
            continue


@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2099, 1, 1),
        timezones=st.just(UTC),
    ),
    st.integers(-720, 720),
)
@settings(max_examples=200, deadline=None)
def test_datetime_round_trip(when: Any, deviation: int) -> None:
    when = when.replace(microsecond=when.microsecond // 10_000 * 10_000)
    dt = DateTime.from_datetime(when, deviation_min=deviation)
    assert DateTime.from_bytes(dt.to_bytes()) == dt
    assert dt.to_datetime() == when


@given(
    st.lists(
        st.tuples(
            st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)),
            st.integers(-720, 720) | st.just(None),
            st.integers(0, 2**32 - 1),
        ),
        max_size=20,
    ),
    st.sampled_from(list(Deviation)),
)
@settings(max_examples=200, deadline=None)
def test_profile_fast_path_agrees_with_the_generic_decoder(
    rows: list[tuple[datetime, int | None, int]], convention: Deviation
) -> None:
    cells = []
    for when, dev, value in rows:
        dt = DateTime.from_datetime(when, deviation_min=dev or 0, convention=convention)
        if dev is None:
            dt = DateTime(dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second, dt.hundredths, None, 0, dt.weekday)
        cells.append((dt.to_bytes(), axdr.DoubleLongUnsigned(value)))
    got = decode_profile(axdr.encode(cells), 0, 900, convention)
    want = [int(DateTime.from_bytes(c[0]).to_datetime(convention).timestamp()) for c in cells]
    assert got.ts.tolist() == want
    assert got.values.shape == ((len(rows), 2) if rows else (0, 0))  # no rows: the column count is unknown
    if rows:
        assert got.values[:, 1].tolist() == [float(v) for _, _, v in rows]
