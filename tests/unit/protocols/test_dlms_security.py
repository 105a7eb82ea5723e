"""Security suite 0 (AES-GCM-128) and HLS-GMAC: the Green Book worked example, tampering, replay, the HLS pass 3/4
proofs cross-checked against cryptography's one-shot AESGCM, and persisted invocation counters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from amiflow.errors import FrameError, ProtocolError, StorageError
from protocols.dlms.acse import Aare, Aarq, ContextName, InitiateRequest, InitiateResponse, Mechanism
from protocols.dlms.ciphering import Ciphering, CipherSession
from protocols.dlms.counters import FileCounterStore, MemoryCounterStore
from protocols.dlms.security import (
    SC_AUTHENTICATED,
    SC_AUTHENTICATED_ENCRYPTED,
    SC_ENCRYPTED,
    SecurityKeys,
    cipher_apdu,
    decipher_apdu,
    hls_gmac_response,
    verify_hls_gmac_response,
)

# Green Book (DLMS UA 1000-2), security suite 0 worked example.
SYSTEM_TITLE = bytes.fromhex("4D4D4D0000BC614E")
KEYS = SecurityKeys(
    ek=bytes.fromhex("000102030405060708090A0B0C0D0E0F"), ak=bytes.fromhex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF")
)
GET_CLOCK = bytes.fromhex("C0010000080000010000FF0200")
GLO_GET_CLOCK = bytes.fromhex("C81E3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B")


def test_green_book_example() -> None:
    assert cipher_apdu(GET_CLOCK, system_title=SYSTEM_TITLE, invocation_counter=0x01234567, keys=KEYS) == GLO_GET_CLOCK
    got = decipher_apdu(GLO_GET_CLOCK, system_title=SYSTEM_TITLE, keys=KEYS)
    assert (got.apdu, got.invocation_counter, got.security) == (GET_CLOCK, 0x01234567, 0x30)


@pytest.mark.parametrize("security", [SC_AUTHENTICATED_ENCRYPTED, SC_AUTHENTICATED, SC_ENCRYPTED])
def test_round_trip_and_tampering(security: int) -> None:
    glo = cipher_apdu(GET_CLOCK, system_title=SYSTEM_TITLE, invocation_counter=7, keys=KEYS, security=security)
    assert (GET_CLOCK in glo) == (security == SC_AUTHENTICATED)  # authenticated only: sent in clear
    assert decipher_apdu(glo, system_title=SYSTEM_TITLE, keys=KEYS).apdu == GET_CLOCK
    if security & SC_AUTHENTICATED:
        for i in range(7, len(glo)):  # every byte after the header is covered by the tag
            bad = bytearray(glo)
            bad[i] ^= 0x01
            with pytest.raises((ProtocolError, FrameError)):
                decipher_apdu(bytes(bad), system_title=SYSTEM_TITLE, keys=KEYS)
        other = SecurityKeys(KEYS.ek, bytes(16))
        with pytest.raises(ProtocolError, match="deciphering-error"):
            decipher_apdu(glo, system_title=SYSTEM_TITLE, keys=other)
        with pytest.raises(ProtocolError, match="deciphering-error"):
            decipher_apdu(glo, system_title=bytes(8), keys=KEYS)  # another sender's IV


def test_replay_and_malformed() -> None:
    glo = cipher_apdu(GET_CLOCK, system_title=SYSTEM_TITLE, invocation_counter=10, keys=KEYS)
    assert decipher_apdu(glo, system_title=SYSTEM_TITLE, keys=KEYS, last_invocation_counter=9).invocation_counter == 10
    with pytest.raises(ProtocolError, match="invocation-counter-error"):
        decipher_apdu(glo, system_title=SYSTEM_TITLE, keys=KEYS, last_invocation_counter=10)
    for cut in range(len(glo)):
        with pytest.raises((FrameError, ProtocolError)):
            decipher_apdu(glo[:cut], system_title=SYSTEM_TITLE, keys=KEYS)
    with pytest.raises(ValueError):
        cipher_apdu(b"\x60\x00", system_title=SYSTEM_TITLE, invocation_counter=1, keys=KEYS)  # AARQ: not glo
    with pytest.raises(ValueError):
        cipher_apdu(GET_CLOCK, system_title=SYSTEM_TITLE, invocation_counter=2**32, keys=KEYS)
    assert "hidden" in repr(KEYS) and KEYS.ek.hex() not in repr(KEYS)


def test_glo_initiate_request() -> None:
    initiate = InitiateRequest().to_bytes()
    glo = cipher_apdu(initiate, system_title=SYSTEM_TITLE, invocation_counter=1, keys=KEYS)
    assert glo[0] == 0x21
    assert decipher_apdu(glo, system_title=SYSTEM_TITLE, keys=KEYS).apdu == initiate


@given(st.binary(min_size=1, max_size=300).map(lambda b: b"\xc4" + b), st.integers(0, 2**32 - 1))
@settings(max_examples=100, deadline=None)
def test_cipher_matches_one_shot_aesgcm(apdu: bytes, ic: int) -> None:
    glo = cipher_apdu(apdu, system_title=SYSTEM_TITLE, invocation_counter=ic, keys=KEYS)
    iv = SYSTEM_TITLE + ic.to_bytes(4, "big")
    full = AESGCM(KEYS.ek).encrypt(iv, apdu, b"\x30" + KEYS.ak)  # ciphertext || 16-byte tag
    assert glo.endswith(b"\x30" + ic.to_bytes(4, "big") + full[:-16] + full[-16:-4])
    assert decipher_apdu(glo, system_title=SYSTEM_TITLE, keys=KEYS).apdu == apdu


def test_hls_gmac_pass_3_and_4() -> None:
    client_title, server_title = b"AMF\x00\x00\x00\x00\x01", SYSTEM_TITLE
    stoc, ctos = bytes(range(16)), b"CLIENTCHALLENGE!"
    f_stoc = hls_gmac_response(stoc, system_title=client_title, invocation_counter=5, keys=KEYS)
    iv = client_title + (5).to_bytes(4, "big")
    assert f_stoc == b"\x10\x00\x00\x00\x05" + AESGCM(KEYS.ek).encrypt(iv, b"", b"\x10" + KEYS.ak + stoc)[:12]
    assert verify_hls_gmac_response(f_stoc, stoc, system_title=client_title, keys=KEYS) == 5
    f_ctos = hls_gmac_response(ctos, system_title=server_title, invocation_counter=99, keys=KEYS)
    assert verify_hls_gmac_response(f_ctos, ctos, system_title=server_title, keys=KEYS, last_invocation_counter=3) == 99
    with pytest.raises(ProtocolError, match="authentication failure"):
        verify_hls_gmac_response(f_stoc, ctos, system_title=client_title, keys=KEYS)  # answers another challenge
    with pytest.raises(ProtocolError, match="authentication failure"):
        verify_hls_gmac_response(f_stoc, stoc, system_title=client_title, keys=SecurityKeys(KEYS.ek, bytes(16)))
    with pytest.raises(ProtocolError, match="not above"):
        verify_hls_gmac_response(f_stoc, stoc, system_title=client_title, keys=KEYS, last_invocation_counter=5)
    with pytest.raises(ValueError):
        hls_gmac_response(b"short", system_title=client_title, invocation_counter=1, keys=KEYS)


def test_file_counters_never_repeat_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "counters" / "ic.json"
    store = FileCounterStore(path, block=4)
    first = [store.next("M1:1") for _ in range(6)]
    assert first == [0, 1, 2, 3, 4, 5]
    assert json.loads(path.read_text()) == {"M1:1": 8}  # reserved ahead of use, on disk before use
    again = FileCounterStore(path, block=4)  # a restart (or a crash) skips the unused reservation
    assert again.next("M1:1") == 8 and again.next("M2:1") == 0
    again.observe("M1:1", 100)  # the meter says it has seen 100
    assert FileCounterStore(path).next("M1:1") == 101
    mem = MemoryCounterStore()
    assert [mem.next("k"), mem.next("k")] == [0, 1]
    mem.observe("k", 10)
    assert mem.next("k") == 11


def test_corrupt_counter_file_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "ic.json"
    path.write_text("{not json")
    with pytest.raises(StorageError, match="unreadable"):
        FileCounterStore(path)
    path.write_text('{"k": -1}')
    with pytest.raises(StorageError):
        FileCounterStore(path)


def test_hls_gmac_association_sans_io() -> None:
    """Both sides of an HLS-GMAC association with protocols.dlms.ciphering on top of security.py: titles and
    challenges in AARQ/AARE, a glo-initiate exchange, pass 3 and 4, a ciphered GET, replay and impostor refused."""
    client = CipherSession(Ciphering(b"AMF\x00\x00\x00\x00\x01", KEYS, MemoryCounterStore()), "meter:1")
    server = CipherSession(Ciphering(SYSTEM_TITLE, KEYS, MemoryCounterStore()), "server")
    ctos, stoc = b"C" * 16, b"S" * 16
    aarq = Aarq(
        context=ContextName.LN_CIPHERED,
        mechanism=Mechanism.HLS_GMAC,
        auth_value=ctos,
        calling_ap_title=client.ciphering.system_title,
        user_information=client.wrap(InitiateRequest().to_bytes()),
    )
    got = Aarq.from_bytes(aarq.to_bytes())
    server.peer_title = got.calling_ap_title
    assert InitiateRequest.from_bytes(server.unwrap(got.user_information)) == InitiateRequest()
    aare = Aare(
        context=ContextName.LN_CIPHERED,
        mechanism=Mechanism.HLS_GMAC,
        responding_ap_title=server.ciphering.system_title,
        auth_value=stoc,
        user_information=server.wrap(InitiateResponse().to_bytes()),
    )
    answer = Aare.from_bytes(aare.to_bytes())
    client.peer_title = answer.responding_ap_title
    assert InitiateResponse.from_bytes(client.unwrap(answer.user_information)) == InitiateResponse()
    server.check(client.prove(answer.auth_value or b""), stoc)  # pass 3: the client holds the keys
    client.check(server.prove(ctos), ctos)  # pass 4: the server holds the keys
    request = client.wrap(GET_CLOCK)
    assert server.unwrap(request) == GET_CLOCK
    with pytest.raises(ProtocolError, match="invocation-counter-error"):
        server.unwrap(request)  # the same APDU again is a replay
    with pytest.raises(ProtocolError, match="unciphered"):
        server.unwrap(GET_CLOCK)
    impostor = CipherSession(
        Ciphering(client.ciphering.system_title, SecurityKeys(KEYS.ek, bytes(16)), MemoryCounterStore()), "x"
    )
    with pytest.raises(ProtocolError, match="authentication failure"):
        server.check(impostor.prove(stoc), stoc)
