"""The byte codecs under fuzz: every decoder of protocols/ that takes bytes from a meter or a capture, each as a
:class:`Target` with its seeds (valid inputs: corpora, spec vectors, what amiflow's own encoders and simulators
send), its mutator and a ``check(data)`` that feeds one input to every entry point of the codec.

``check`` lets amiflow's own errors (:class:`amiflow.errors.AmiflowError`) out - the strict entry points raise
FrameError on purpose - and nothing else: a foreign exception is a bug the harness reports. P1 and SML reuse the
checks of their own fuzz tests (``tests/unit/protocols/p1``, ``.../sml``). The document decoders (JSON, CSV) are in
:mod:`tests.fuzz.document_targets`.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from amiflow.errors import AmiflowError
from amiflow.types import parse_obis
from protocols.decode import decode_bytes
from protocols.dlms import axdr, describe_apdu, describe_hdlc
from protocols.dlms.acse import Aare, Aarq, ContextName, InitiateRequest, InitiateResponse, Mechanism, Rlre, Rlrq
from protocols.dlms.hdlc import NEED_DATA as HDLC_NEED_DATA  # the wrapper framer's NEED_DATA too
from protocols.dlms.hdlc import HdlcAddress, HdlcConnection, HdlcFrame, HdlcFramer, Role
from protocols.dlms.wrapper import WrapperFramer
from protocols.dlms.xdlms import AttributeDescriptor, GetRequest, parse_xdlms
from protocols.iec62056_21 import IecClient, IecMeter, build_identification, build_readout, parse_readout
from protocols.mbus import KeyRing, MbusStreamDecoder, WmbusReceiver, decode_mbus_capture, decode_wmbus, parse_frame
from tests.fuzz.modbus_target import check_modbus, modbus_seeds
from tests.fuzz.mutators import mutate_bytes
from tests.unit.protocols.p1 import test_p1_fuzz as p1_fuzz
from tests.unit.protocols.sml import test_sml_fuzz as sml_fuzz

__all__ = ["CODEC_TARGETS", "Target"]

DATA = Path(__file__).resolve().parents[1] / "data"
Mutator = Callable[[random.Random, bytes, Sequence[bytes], Sequence[bytes]], bytes]


@dataclass(frozen=True)
class Target:
    """One decoder under fuzz: ``seeds()`` valid inputs, ``check(data)`` every entry point on one input."""

    name: str
    seeds: Callable[[], list[bytes]]
    check: Callable[[bytes], object]
    tokens: tuple[bytes, ...] = ()
    mutator: Mutator = field(default=mutate_bytes)

    def mutate(self, rng: random.Random, pool: Sequence[bytes]) -> bytes:
        return self.mutator(rng, rng.choice(pool), pool, self.tokens)


def _strict(*calls: Callable[[], object]) -> None:
    """Run each strict entry point; amiflow's errors are their documented answer to a bad input."""
    for call in calls:
        with contextlib.suppress(AmiflowError):
            call()


def _drain(next_event: Callable[[], object], limit: int, done: object = None) -> int:
    """Pull events until ``done`` (NEED_DATA); an endless stream of events is a hang, so it fails the check."""
    for n in range(limit):
        try:
            if next_event() is done:
                return n
        except AmiflowError:
            continue  # the stream answered one malformed frame and resyncs
    raise AssertionError(f"next_event did not reach NEED_DATA within {limit} events")


# -- IEC 62056-21 ----------------------------------------------------------------------------------------------------
def _iec_seeds() -> list[bytes]:
    lines = ["0-0:96.1.0(12345678)", "1.8.0(001234.567*kWh)", "2.8.0(000012.004*kWh)", "1.8.1(000800.1*kWh)",
             "0.9.1(123015)", "0.9.2(261101)", "32.7.0(230.1*V)", "31.7.0(1.25*A)", "1.6.0(003.21*kW)(2611011200)",
             "C.1.0(99887766)", "F.F(00000000)"]  # fmt: skip
    ident = build_identification("ISK", "5", "2MT382-1000")
    readout = build_readout(lines)
    return [readout, ident + readout, b"/?!\r\n" + ident + b"\x06050\r\n" + readout, build_readout(lines[:2])]


def _iec_check(data: bytes) -> None:
    parse_readout(data)
    parse_readout(data, meter="M1", ts=1_700_000_000)
    decode_bytes("iec62056-21", data)
    client = IecClient()
    client.send_sign_on()
    client.receive_data(data)
    for _ in range(4):
        try:
            event = client.next_event()
            if event is None:
                break
            if client.state == "option":
                client.send_option_select()
        except AmiflowError:
            break
    meter = IecMeter()
    meter.receive_data(data)
    _drain(meter.next_event, len(data) + 2)


# -- HDLC ------------------------------------------------------------------------------------------------------------
_CLOCK = AttributeDescriptor(8, parse_obis("0-0:1.0.0"), 2)


def _apdu_seeds() -> list[bytes]:
    initiate = InitiateRequest(max_pdu=0x04B0).to_bytes()
    profile = axdr.encode([(bytes(12), axdr.DoubleLongUnsigned(k * 7), axdr.Float32(0.5)) for k in range(6)])
    return [
        Aarq(user_information=initiate).to_bytes(),
        Aarq(ContextName.LN, Mechanism.LLS, b"12345678", user_information=initiate).to_bytes(),
        Aarq(ContextName.LN_CIPHERED, Mechanism.HLS_GMAC, b"12345678", b"ABCDEFGH").to_bytes(),
        Aare(user_information=InitiateResponse(max_pdu=0x1F4).to_bytes()).to_bytes(),
        Rlrq().to_bytes(),
        Rlre().to_bytes(),
        GetRequest(1, 0xC1, ((_CLOCK, None),)).to_bytes(),
        bytes.fromhex("C401C100") + axdr.encode(bytes(12)),
        bytes.fromhex("C401C100") + profile,
        bytes.fromhex("C401C100") + axdr.encode([axdr.Long(-5), axdr.Enum(30)]),
        bytes.fromhex("C401C10006") + (123456).to_bytes(4, "big"),
        bytes.fromhex("D80101"),  # exception response
    ]


def _hdlc_seeds() -> list[bytes]:
    client = HdlcConnection(Role.CLIENT, client=HdlcAddress(16), server=HdlcAddress(1))
    server = HdlcConnection(Role.SERVER, client=HdlcAddress(16), server=HdlcAddress(1))
    out = [client.connect()]
    server.receive_data(out[0])
    server.next_event()
    out.append(server.data_to_send())
    client.receive_data(out[1])
    client.next_event()
    for apdu in [*_apdu_seeds()[:3], bytes.fromhex("C401C100") + bytes(300)]:
        out.append(client.send(apdu))
        out.append(client.data_to_send())
    out.append(client.disconnect())
    return [b for b in out if b] + [b"".join(out)]


def _hdlc_check(data: bytes) -> None:
    _strict(lambda: HdlcFrame.from_bytes(data), lambda: describe_hdlc(data))
    framer = HdlcFramer()
    framer.receive_data(data)
    _drain(framer.next_event, len(data) + 2, done=HDLC_NEED_DATA)
    for role in (Role.CLIENT, Role.SERVER):
        conn = HdlcConnection(role, client=HdlcAddress(16), server=HdlcAddress(1))
        if role is Role.CLIENT:
            conn.connect()
        conn.receive_data(data)
        _drain(conn.next_event, len(data) + 2, done=HDLC_NEED_DATA)
        conn.data_to_send()


# -- APDU / A-XDR ----------------------------------------------------------------------------------------------------
def _apdu_check(data: bytes) -> None:
    _strict(
        lambda: describe_apdu(data),
        lambda: parse_xdlms(data),
        lambda: axdr.decode(data),
        lambda: axdr.to_json(axdr.decode(data[1:])),
        lambda: Aarq.from_bytes(data),
        lambda: Aare.from_bytes(data),
        lambda: InitiateRequest.from_bytes(data),
        lambda: InitiateResponse.from_bytes(data),
    )
    framer = WrapperFramer()  # the TCP wrapper around the APDU, and the input read as a wrapper stream itself
    framer.receive_data(bytes.fromhex("000100100001") + len(data[:65535]).to_bytes(2, "big") + data[:65535] + data)
    _drain(framer.next_event, len(data) + 4, done=HDLC_NEED_DATA)


# -- M-Bus -----------------------------------------------------------------------------------------------------------
def _hex_file(path: Path) -> bytes:
    return bytes.fromhex("".join(path.read_text().split()))


def _mbus_seeds() -> list[bytes]:
    seeds = [_hex_file(p) for p in sorted((DATA / "mbus" / "libmbus").glob("*.hex"))]
    seeds += [_hex_file(p) for p in sorted((DATA / "mbus" / "pymeterbus").glob("*.hex"))]
    seeds += [_hex_file(p) for p in sorted((DATA / "mbus" / "wmbus").glob("*.hex"))]
    return [s for s in seeds if s] + [b"\xe5", bytes.fromhex("105b01 5c16".replace(" ", ""))]


@cache
def _mbus_keys() -> KeyRing:
    keys = json.loads((DATA / "mbus" / "wmbus" / "keys.json").read_text())
    return KeyRing([(ident, key) for entry in keys.values() for ident, key in entry.items()])


def _mbus_check(data: bytes) -> None:
    keys = _mbus_keys()
    _strict(lambda: parse_frame(data), lambda: decode_wmbus(data), lambda: decode_wmbus(data, keys=keys))
    decode_mbus_capture(data, received_ts=1_700_000_000)
    decode_mbus_capture(data, keys=keys, received_ts=1_700_000_000)
    decode_mbus_capture(data.hex().encode(), keys=keys, received_ts=1_700_000_000)
    dec = MbusStreamDecoder()
    dec.receive_data(data)
    _drain(dec.next_event, len(data) + 2)
    for mode, chunk in (("raw", data), ("hex", data.hex().encode() + b"\n")):
        receiver = WmbusReceiver(mode, keys=keys)
        receiver.receive_data(chunk)
        receiver.receive_data(b"")
        _drain(receiver.next_event, len(chunk) + 2)


_DLMS_TOKENS = (b"\x7e", b"\x7d", b"\xa0", b"\x01", b"\x02", b"\x09", b"\x82\xff\xff", b"\x81", b"\x00\x00")
CODEC_TARGETS: tuple[Target, ...] = (
    Target("p1", p1_fuzz.corpus, p1_fuzz.check, p1_fuzz._INSERTS),
    Target("iec62056-21", _iec_seeds, _iec_check, (b"/", b"!", b"(", b")", b"*", b"\r\n", b"\x02", b"\x03", b"\x06")),
    Target("hdlc", _hdlc_seeds, _hdlc_check, _DLMS_TOKENS),
    Target("dlms-apdu", _apdu_seeds, _apdu_check, _DLMS_TOKENS),
    Target("modbus", modbus_seeds, check_modbus, (b"\x00\x00", b"\xff\xff", b"\x80\x00", b"\x7f\xc0", b"Su", b"nS")),
    Target("sml", sml_fuzz.corpus, sml_fuzz.check, sml_fuzz._INSERTS),
    Target("mbus", _mbus_seeds, _mbus_check, (b"\x68", b"\x16", b"\x10", b"\xe5", b"\x0f", b"\x1f", b"\x2f", b"\xfd")),
)
