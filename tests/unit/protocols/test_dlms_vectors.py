"""DLMS/COSEM codec byte vectors (Green Book examples and well-known captures), streams split at every byte,
garbage that resyncs or raises, and the client/server associations talking to each other without I/O."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from amiflow.errors import ConnectError, FrameError, ProtocolError
from amiflow.types import parse_obis
from protocols.dlms import axdr
from protocols.dlms.acse import Aare, Aarq, AssociationResult, InitiateRequest, InitiateResponse, Mechanism, Rlrq
from protocols.dlms.cosem import DateTime, Deviation
from protocols.dlms.hdlc import (
    NEED_DATA,
    Connected,
    Data,
    Disconnected,
    HdlcAddress,
    HdlcConnection,
    HdlcFrame,
    HdlcFramer,
    HdlcParameters,
    Role,
    crc16_x25,
)
from protocols.dlms.profile_generic import (
    CaptureObject,
    decode_profile,
    parse_capture_objects,
    parse_range_descriptor,
    range_descriptor,
)
from protocols.dlms.wrapper import WrapperFrame, WrapperFramer
from protocols.dlms.xdlms import (
    AccessSelection,
    ActionRequest,
    ActionResponse,
    AttributeDescriptor,
    ExceptionResponse,
    GetRequest,
    GetResponse,
    SetRequest,
    parse_xdlms,
)

CLIENT = HdlcAddress(16)
SERVER = HdlcAddress(1)
CLOCK = AttributeDescriptor(8, parse_obis("0-0:1.0.0"), 2)

# Green Book / widely published example frames.
SNRM = bytes.fromhex("7EA0070321930F017E")
DISC = bytes.fromhex("7EA00703215303C77E")
AARQ_NONE = bytes.fromhex("601DA109060760857405080101BE10040E01000000065F1F0400007E1F04B0")
AARQ_LLS = bytes.fromhex(
    "6036A1090607608574050801018A0207808B0760857405080201AC0A80083132333435363738BE10040E01000000065F1F0400007E1F04B0"
)
AARE_OK = bytes.fromhex("6129A109060760857405080101A203020100A305A103020100BE10040E0800065F1F040000501F01F40007")
GET_CLOCK = bytes.fromhex("C001C100080000010000FF0200")


def test_crc16_x25_check_value() -> None:
    assert crc16_x25(b"123456789") == 0x906E


def test_snrm_and_disc_vectors() -> None:
    client = HdlcConnection(Role.CLIENT, client=CLIENT, server=SERVER)
    assert client.connect() == SNRM
    assert client.disconnect() == DISC
    frame = HdlcFrame.from_bytes(SNRM)
    assert (frame.kind.value, frame.dest, frame.src, frame.poll) == ("SNRM", SERVER, CLIENT, True)


def test_server_address_forms() -> None:
    assert HdlcAddress.server(1, 0x11).to_bytes() == bytes.fromhex("0223")
    assert HdlcAddress.from_bytes(bytes.fromhex("0223")) == HdlcAddress(1, 0x11, 2)
    four = HdlcAddress.server(1, 0x1234)
    assert HdlcAddress.from_bytes(four.to_bytes()) == four


def test_aarq_aare_vectors() -> None:
    initiate = InitiateRequest(max_pdu=0x04B0).to_bytes()
    assert Aarq(user_information=initiate).to_bytes() == AARQ_NONE
    assert Aarq(mechanism=Mechanism.LLS, auth_value=b"12345678", user_information=initiate).to_bytes() == AARQ_LLS
    parsed = Aarq.from_bytes(AARQ_LLS)
    assert (parsed.mechanism, parsed.auth_value) == (Mechanism.LLS, b"12345678")
    assert InitiateRequest.from_bytes(parsed.user_information).max_pdu == 0x04B0
    aare = Aare.from_bytes(AARE_OK)
    assert aare.result is AssociationResult.ACCEPTED
    assert InitiateResponse.from_bytes(aare.user_information) == InitiateResponse(0x00501F, 0x01F4, 6, 7)
    assert Aare(user_information=InitiateResponse(max_pdu=0x1F4).to_bytes()).to_bytes() == AARE_OK


def test_refused_aare_names_the_reason() -> None:
    raw = Aare(AssociationResult.REJECTED_PERMANENT, 13).to_bytes()
    assert "authentication-failure" in Aare.from_bytes(raw).reason()


def test_get_request_and_responses() -> None:
    assert GetRequest(1, 0xC1, ((CLOCK, None),)).to_bytes() == GET_CLOCK
    assert parse_xdlms(GET_CLOCK) == GetRequest(1, 0xC1, ((CLOCK, None),))
    when = datetime(2026, 11, 1, 12, 30, 15, tzinfo=UTC)
    value = axdr.encode(DateTime.from_datetime(when).to_bytes())
    raw = bytes.fromhex("C401C100") + value
    response = parse_xdlms(raw)
    assert isinstance(response, GetResponse) and response.to_bytes() == raw
    cell = axdr.decode(response.results[0][0] or b"")
    assert DateTime.from_bytes(cell).to_datetime() == when
    denied = parse_xdlms(bytes.fromhex("C401C10103"))
    assert isinstance(denied, GetResponse) and denied.results == ((None, 3),)
    block = GetResponse(2, 0xC1, ((b"\x01\x02", None),), last=False, block=1).to_bytes()
    assert block == bytes.fromhex("C402C1000000000100020102")
    assert parse_xdlms(block) == GetResponse(2, 0xC1, ((b"\x01\x02", None),), last=False, block=1)
    assert parse_xdlms(bytes.fromhex("C002C100000001")) == GetRequest(2, 0xC1, block=1)


def test_action_set_and_exception() -> None:
    relay = AttributeDescriptor(70, parse_obis("0-0:96.3.10"), 1)
    raw = bytes.fromhex("C301C10046000060030AFF01010F00")
    assert ActionRequest(0xC1, relay, axdr.encode(axdr.Integer(0))).to_bytes() == raw
    assert parse_xdlms(raw) == ActionRequest(0xC1, relay, b"\x0f\x00")
    assert parse_xdlms(bytes.fromhex("C701C10000")) == ActionResponse(0xC1, 0)
    assert parse_xdlms(bytes.fromhex("C701C10300")) == ActionResponse(0xC1, 3)
    exc = parse_xdlms(bytes.fromhex("D80101"))
    assert isinstance(exc, ExceptionResponse) and exc.describe() == "service-not-allowed, operation-not-possible"
    new = axdr.encode(DateTime.from_datetime(datetime(2026, 1, 1, tzinfo=UTC)).to_bytes())
    req = SetRequest(1, 0xC2, CLOCK, new)
    assert parse_xdlms(req.to_bytes()) == req


def test_selective_access_round_trip() -> None:
    lo, hi = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    access = range_descriptor(lo, hi)
    desc = AttributeDescriptor(7, parse_obis("1-0:99.1.0"), 2)
    req = GetRequest(1, 0xC3, ((desc, access),))
    back = parse_xdlms(req.to_bytes())
    assert isinstance(back, GetRequest) and back.to_bytes() == req.to_bytes()
    got = back.items[0][1]
    assert got is not None and got.selector == 1 and parse_range_descriptor(got) == (lo, hi)
    with pytest.raises(FrameError):
        parse_range_descriptor(AccessSelection(2, (axdr.DoubleLongUnsigned(1),)))


@pytest.mark.parametrize("convention", list(Deviation))
def test_datetime_deviation_sign_and_junk(convention: Deviation) -> None:
    when = datetime(2026, 3, 29, 1, 15, tzinfo=UTC)
    raw = DateTime.from_datetime(when, deviation_min=60, convention=convention).to_bytes()
    assert raw[5] == 2  # 02:15 local time (CET)
    assert int.from_bytes(raw[9:11], "big", signed=True) == 60 * convention.sign
    assert DateTime.from_bytes(raw).to_datetime(convention) == when
    assert DateTime.from_bytes(raw + b"\x00\x17").to_datetime(convention) == when  # trailing junk (firmware quirk)
    with pytest.raises(FrameError):
        DateTime.from_bytes(raw[:11])
    with pytest.raises(FrameError):
        DateTime.from_bytes(b"\xff\xff" + raw[2:]).to_datetime(convention)
    unspecified = DateTime.from_bytes(raw[:9] + b"\x80\x00\x00")
    assert unspecified.deviation is None and unspecified.to_datetime(convention).hour == 2


def test_profile_rows_with_null_compression() -> None:
    t0 = datetime(2026, 1, 1, 0, 15, tzinfo=UTC)
    rows = [
        (DateTime.from_datetime(t0).to_bytes(), axdr.DoubleLongUnsigned(100), "x"),
        (None, axdr.Long(-120), "y"),
        (None, None, None),
    ]
    decoded = decode_profile(axdr.encode(rows), 0, 900)
    start = int(t0.timestamp())
    assert decoded.ts.tolist() == [start, start + 900, start + 1800]
    assert decoded.values[:, 1].tolist() == [100.0, -120.0, -120.0]
    assert np.isnan(decoded.values[:, 2]).all() and np.isnan(decoded.values[:, 0]).all()
    assert decode_profile(axdr.encode([]), 0, 900).ts.size == 0
    with pytest.raises(FrameError):
        decode_profile(axdr.encode([(None, axdr.Unsigned(1))]), 0, 900)
    good = axdr.encode(rows)
    for cut in range(len(good)):  # every truncation is a FrameError, never a hang or a wrong answer
        with pytest.raises(FrameError):
            decode_profile(good[:cut], 0, 900)
    caps = (CaptureObject(8, parse_obis("0-0:1.0.0"), 2), CaptureObject(3, parse_obis("1-0:1.29.0"), 2))
    assert parse_capture_objects(axdr.decode(axdr.encode([c.to_value() for c in caps]))) == caps
    assert caps[0].is_clock and not caps[1].is_clock


# -- streams -------------------------------------------------------------------------------------------------------


def _frames() -> list[bytes]:
    info = b"\xe6\xe7\x00" + bytes(range(200))
    return [
        SNRM,
        HdlcFrame(CLIENT, SERVER, 0x30, info[:100], segmented=True).to_bytes(),
        HdlcFrame(CLIENT, SERVER, 0x32, info[100:]).to_bytes(),
        HdlcFrame(CLIENT, SERVER, 0x51).to_bytes(),
    ]


def test_hdlc_every_split_point() -> None:
    stream = b"".join(_frames())
    expected = [HdlcFrame.from_bytes(f) for f in _frames()]
    for cut in range(len(stream) + 1):
        framer = HdlcFramer()
        got = []
        for part in (stream[:cut], stream[cut:]):
            framer.receive_data(part)
            while (event := framer.next_event()) is not NEED_DATA:
                got.append(event)
        assert got == expected, cut


def test_hdlc_byte_by_byte_and_shared_flags() -> None:
    frames = _frames()
    stream = frames[0] + b"".join(f[1:] for f in frames[1:])  # one flag closes a frame and opens the next
    framer = HdlcFramer()
    got = []
    for b in stream:
        framer.receive_data(bytes((b,)))
        while (event := framer.next_event()) is not NEED_DATA:
            got.append(event)
    assert got == [HdlcFrame.from_bytes(f) for f in frames]


@pytest.mark.parametrize("garbage", [b"\x00\x01\x02", b"\x7e\x7e\x7e", b"\x7e\xa0\x07\x03\x21\x93\x00\x00\x7e"])
def test_hdlc_garbage_then_resync(garbage: bytes) -> None:
    framer = HdlcFramer()
    framer.receive_data(garbage + SNRM)
    got = []
    for _ in range(10):  # bounded: every call consumes input or asks for more
        try:
            event = framer.next_event()
        except FrameError:
            continue
        if event is NEED_DATA:
            break
        got.append(event)
    assert got == [HdlcFrame.from_bytes(SNRM)]


def test_hdlc_bad_fcs_raises_then_next_frame_parses() -> None:
    bad = bytearray(SNRM)
    bad[-2] ^= 0xFF
    framer = HdlcFramer()
    framer.receive_data(bytes(bad) + DISC)
    with pytest.raises(FrameError, match=r"FCS|HCS"):
        framer.next_event()
    assert framer.next_event() == HdlcFrame.from_bytes(DISC)


def test_hdlc_random_garbage_never_hangs() -> None:
    import random

    rng = random.Random(7)
    for _ in range(300):
        framer = HdlcFramer()
        framer.receive_data(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80))))
        for _ in range(200):
            try:
                if framer.next_event() is NEED_DATA:
                    break
            except FrameError:
                pass
        else:
            pytest.fail("the framer neither consumed the input nor asked for more")
        assert framer.buffered <= 2049


def test_wrapper_split_and_resync() -> None:
    frames = [WrapperFrame(16, 1, AARQ_NONE), WrapperFrame(1, 16, AARE_OK), WrapperFrame(16, 1, GET_CLOCK)]
    stream = b"".join(f.to_bytes() for f in frames)
    for cut in range(len(stream) + 1):
        framer = WrapperFramer()
        got = []
        for part in (stream[:cut], stream[cut:]):
            framer.receive_data(part)
            while (event := framer.next_event()) is not NEED_DATA:
                got.append(event)
        assert got == frames
    framer = WrapperFramer()
    framer.receive_data(b"\x12\x34\x56" + frames[0].to_bytes())
    with pytest.raises(FrameError):
        framer.next_event()
    assert framer.next_event() == frames[0]
    assert frames[0].to_bytes()[:8] == bytes.fromhex("000100100001001F")


# -- link and association state machines (no I/O) ---------------------------------------------------------------


def _pump(a: HdlcConnection, b: HdlcConnection, data: bytes) -> list[object]:
    """Deliver ``data`` from a to b and everything they answer each other, until quiet; b's and a's events."""
    events: list[object] = []
    wire = [(b, data)]
    while wire:
        dest, chunk = wire.pop(0)
        dest.receive_data(chunk)
        while (ev := dest.next_event()) is not NEED_DATA:
            events.append(ev)
        out = dest.data_to_send()
        if out:
            wire.append((a if dest is b else b, out))
    return events


def test_hdlc_link_with_segmentation_both_ways() -> None:
    client = HdlcConnection(Role.CLIENT, client=CLIENT, server=SERVER)
    server = HdlcConnection(Role.SERVER, client=CLIENT, server=SERVER, params=HdlcParameters(128, 128))
    events = _pump(client, server, client.connect())
    assert isinstance(events[0], Connected) and isinstance(events[1], Connected)
    big = bytes(range(256)) * 3
    events = _pump(client, server, client.send(big))
    assert events == [Data(big)]
    events = _pump(server, client, server.send(big[::-1]))
    assert events == [Data(big[::-1])]
    events = _pump(client, server, client.disconnect())
    assert [type(e) for e in events] == [Disconnected, Disconnected]


def test_hdlc_server_repeats_a_lost_answer() -> None:
    client = HdlcConnection(Role.CLIENT, client=CLIENT, server=SERVER)
    server = HdlcConnection(Role.SERVER, client=CLIENT, server=SERVER)
    _pump(client, server, client.connect())
    request = client.send(b"\x01\x02")
    server.receive_data(request)
    assert server.next_event() == Data(b"\x01\x02")
    answer = server.send(b"\x03")
    server.receive_data(client.retransmit())  # the answer was lost: the client repeats its request
    assert server.next_event() is NEED_DATA
    assert server.data_to_send() == answer
    client.receive_data(answer)
    assert client.next_event() == Data(b"\x03")


def test_client_server_association_block_transfer_and_rights() -> None:
    from protocols.dlms.association import ClientAssociation, Continue, GetResult
    from protocols.dlms.server import AccessLevel, ClientPolicy, ServerAssociation

    blob = bytes(range(256)) * 20

    class Model:
        def get(self, desc: AttributeDescriptor, access: object, level: AccessLevel) -> bytes | int:
            return axdr.encode(blob) if desc.class_id == 1 else 4

        def set(self, desc: AttributeDescriptor, data: bytes, level: AccessLevel) -> int:
            return 0

        def action(self, desc: AttributeDescriptor, data: bytes | None, level: AccessLevel) -> tuple[int, None]:
            return 0, None

    server = ServerAssociation(Model(), ClientPolicy(Mechanism.LLS, b"pw", AccessLevel.READ), max_pdu=256)
    wrong = ClientAssociation(password=b"nope")
    with pytest.raises(ConnectError, match="authentication-failure"):
        wrong.on_aare(server.handle(wrong.aarq()) or b"")
    client = ClientAssociation(password=b"pw")
    client.on_aare(server.handle(client.aarq()) or b"")
    outcome = client.on_response(server.handle(client.get(AttributeDescriptor(1, parse_obis("0-0:96.1.0"), 2))) or b"")
    blocks = 0
    while isinstance(outcome, Continue):
        blocks += 1
        outcome = client.on_response(server.handle(outcome.request) or b"")
    assert isinstance(outcome, GetResult) and blocks > 10
    assert axdr.decode(outcome.items[0][0] or b"") == blob
    relay = AttributeDescriptor(70, parse_obis("0-0:96.3.10"), 1)
    denied = client.on_response(server.handle(client.action(relay, b"\x0f\x00")) or b"")
    assert getattr(denied, "result", None) == 3  # read-write-denied for a read-only association
    assert Rlrq.from_bytes(client.release()) == Rlrq(0)


def test_requests_before_association_get_an_exception() -> None:
    from protocols.dlms.server import ServerAssociation

    server = ServerAssociation(object(), None)  # type: ignore[arg-type]
    answer = server.handle(GET_CLOCK) or b""
    assert isinstance(parse_xdlms(answer), ExceptionResponse)
    with pytest.raises(ProtocolError):
        from protocols.dlms.association import ClientAssociation

        ClientAssociation().get(CLOCK)
