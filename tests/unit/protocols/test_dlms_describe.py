"""``describe_hdlc`` / ``describe_apdu`` (``amiflow decode hdlc|dlms-apdu``) and the class 70 state machine."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from amiflow.errors import FrameError
from amiflow.types import parse_obis
from protocols.dlms import axdr, describe_apdu, describe_hdlc
from protocols.dlms.acse import Aarq, InitiateRequest, Mechanism
from protocols.dlms.cosem import ControlMode, ControlState, DateTime, ScalerUnit
from protocols.dlms.disconnect import MODE_TRANSITIONS, Trigger, disconnect_transition
from protocols.dlms.hdlc import NEED_DATA, HdlcAddress, HdlcConnection, Role
from protocols.dlms.profile_generic import CaptureObject
from protocols.dlms.xdlms import AttributeDescriptor, GetRequest, GetResponse

ENERGY = parse_obis("1-0:1.8.0")
PROFILE = parse_obis("1-0:99.1.0")
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _capture() -> bytes:
    """An HDLC session as a sniffer sees it: SNRM/UA, a register read (value + scaler_unit), a profile read."""
    client = HdlcConnection(Role.CLIENT, client=HdlcAddress(16), server=HdlcAddress(1))
    server = HdlcConnection(Role.SERVER, client=HdlcAddress(16), server=HdlcAddress(1))
    wire = bytearray()

    def deliver(dest: HdlcConnection, data: bytes) -> None:
        wire.extend(data)
        dest.receive_data(data)
        while dest.next_event() is not NEED_DATA:
            pass
        back = dest.data_to_send()
        if back:
            deliver(client if dest is server else server, back)

    deliver(server, client.connect())
    reg = [(AttributeDescriptor(3, ENERGY, 2), None), (AttributeDescriptor(3, ENERGY, 3), None)]
    deliver(server, client.send(GetRequest(3, 0xC1, tuple(reg)).to_bytes()))
    values = ((axdr.encode(axdr.DoubleLongUnsigned(12345)), None), (axdr.encode(ScalerUnit(1, 30).to_value()), None))
    deliver(client, server.send(GetResponse(3, 0xC1, values).to_bytes()))
    cols = [CaptureObject(8, parse_obis("0-0:1.0.0"), 2), CaptureObject(3, parse_obis("1-0:1.29.0"), 2)]
    deliver(server, client.send(GetRequest(1, 0xC2, ((AttributeDescriptor(7, PROFILE, 3), None),)).to_bytes()))
    deliver(client, server.send(GetResponse(1, 0xC2, ((axdr.encode([c.to_value() for c in cols]), None),)).to_bytes()))
    rows = [(DateTime.from_datetime(T0 + timedelta(minutes=15 * i)).to_bytes(), axdr.LongUnsigned(i)) for i in (1, 2)]
    deliver(server, client.send(GetRequest(1, 0xC3, ((AttributeDescriptor(7, PROFILE, 2), None),)).to_bytes()))
    deliver(client, server.send(GetResponse(1, 0xC3, ((axdr.encode(rows * 10), None),)).to_bytes()))  # segmented
    return bytes(wire)


def test_describe_hdlc_session() -> None:
    out = describe_hdlc(_capture())
    json.dumps(out)  # the CLI prints it
    assert set(out) >= {"meter", "readings", "frames", "issues"}
    kinds = [f.get("hdlc") for f in out["frames"]]
    assert kinds[:2] == ["SNRM", "UA"] and "RR" in kinds  # the long answer went in segments
    register = [r for r in out["readings"] if r["obis"] == "1-0:1.8.0"]
    assert register and register[0]["value"] == pytest.approx(123450.0) and register[0]["unit"] == "Wh"
    profile = [r for r in out["readings"] if r["obis"] == "1-0:1.29.0"]
    assert len(profile) == 20 and profile[0]["ts"].startswith("2026-11-01T00:15:00")
    assert not out["issues"]


def test_describe_apdu_hides_the_password() -> None:
    aarq = Aarq(mechanism=Mechanism.LLS, auth_value=b"s3cret", user_information=InitiateRequest().to_bytes())
    out = describe_apdu(aarq.to_bytes())
    assert out["frames"][0]["apdu"] == "AARQ"
    assert "s3cret" not in json.dumps(out)


@pytest.mark.parametrize("raw", [b"", b"\xc4\x01", b"\x99\x00", b"\xc4\x01\xc1\x00\x06\x00"])
def test_describe_apdu_bad_input_is_a_frame_error(raw: bytes) -> None:
    with pytest.raises(FrameError):
        describe_apdu(raw)


def test_describe_hdlc_without_frames_or_with_bad_fcs() -> None:
    with pytest.raises(FrameError):
        describe_hdlc(b"hello")
    bad = bytearray(bytes.fromhex("7EA0070321930F017E"))
    bad[-2] ^= 1
    with pytest.raises(FrameError):
        describe_hdlc(bytes(bad))
    truncated = describe_hdlc(_capture()[:-5])
    assert truncated["issues"]  # the last frame is incomplete: named, not hidden


D, C, R = ControlState.DISCONNECTED, ControlState.CONNECTED, ControlState.READY_FOR_RECONNECTION


@pytest.mark.parametrize("mode", [1, 3, 5, 6])
def test_remote_reconnect_closes_the_relay_in_modes_without_arming(mode: int) -> None:
    assert disconnect_transition(mode, C, Trigger.REMOTE_DISCONNECT) is D
    assert disconnect_transition(mode, D, Trigger.REMOTE_RECONNECT) is C
    assert not ControlMode(mode).reconnect_arms


@pytest.mark.parametrize("mode", [2, 4])
def test_remote_reconnect_only_arms_in_modes_2_and_4(mode: int) -> None:
    assert disconnect_transition(mode, C, Trigger.REMOTE_DISCONNECT) is D
    assert disconnect_transition(mode, D, Trigger.REMOTE_RECONNECT) is R
    assert disconnect_transition(mode, R, Trigger.MANUAL_RECONNECT) is C  # the customer presses the button
    assert disconnect_transition(mode, R, Trigger.REMOTE_RECONNECT) is R  # repeating the command changes nothing
    assert ControlMode(mode).reconnect_arms


def test_mode_0_refuses_everything_and_repeats_are_idempotent() -> None:
    for trigger in Trigger:
        for state in ControlState:
            assert disconnect_transition(0, state, trigger) is None
    assert disconnect_transition(1, D, Trigger.REMOTE_DISCONNECT) is D
    assert disconnect_transition(1, D, Trigger.MANUAL_RECONNECT) is None  # no button path from disconnected
    assert set(MODE_TRANSITIONS) == set(range(7))
    with pytest.raises(ValueError):
        disconnect_transition(7, C, Trigger.REMOTE_DISCONNECT)
