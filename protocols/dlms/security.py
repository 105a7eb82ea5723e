"""DLMS/COSEM security suite 0 (AES-GCM-128) and HLS-GMAC authentication (Green Book 9.2.7, IEC 62056-5-3), pure.

A ciphered service APDU (general-glo-ciphering by service, "glo" = global key)::

    glo-tag | length | SC (1) | IC (4, big-endian) | ciphertext (or plaintext when only authenticated) | tag (12)

    glo tags: 0x21 initiate-request, 0x28 initiate-response, 0xC8 get-request, 0xC9 set-request,
    0xCB action-request, 0xCC get-response, 0xCD set-response, 0xCF action-response
    SC security control: bits 0-3 suite id (0), bit 4 authentication, bit 5 encryption, bit 6 broadcast key,
    bit 7 compression (not supported): 0x30 authenticated and encrypted, 0x10 authenticated, 0x20 encrypted.

AES-GCM with the block-cipher key EK, IV = sender system title (8) || IC (4), a 12-byte tag and additional data
``SC || AK`` (authenticated and encrypted) or ``SC || AK || plaintext`` (authenticated only, sent in clear).

HLS-GMAC (mechanism 5): the AARQ carries the client's system title and challenge CtoS, the AARE the server's
system title and StoC. Pass 3: the client proves the key with ``f(StoC) = SC 0x10 || IC || GMAC(SC || AK || StoC)``
(IV = client system title || IC) in ACTION reply_to_HLS_authentication (association LN 0-0:40.0.0, class 15,
method 1); pass 4: the server answers ``f(CtoS)`` the same way with its own system title.

The invocation counter of a key must never repeat: the sender advances it for every ciphered APDU and the receiver
refuses one that is not higher than the last it accepted (replay). The client must persist it across sessions:
:class:`protocols.dlms.counters.FileCounterStore`. No I/O, no clock, no randomness here: challenges and counters
come from the caller.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from amiflow.errors import FrameError, ProtocolError

from . import axdr

__all__ = [
    "GLO_TAGS",
    "SC_AUTHENTICATED",
    "SC_AUTHENTICATED_ENCRYPTED",
    "SC_ENCRYPTED",
    "TAG_LEN",
    "Deciphered",
    "SecurityKeys",
    "cipher_apdu",
    "decipher_apdu",
    "gmac_tag",
    "hls_gmac_response",
    "verify_hls_gmac_response",
]

SC_AUTHENTICATED: Final = 0x10
SC_ENCRYPTED: Final = 0x20
SC_AUTHENTICATED_ENCRYPTED: Final = 0x30
TAG_LEN: Final = 12
MAX_INVOCATION_COUNTER: Final = 0xFFFFFFFF

#: plain APDU tag -> its global-ciphering tag
GLO_TAGS: Final = {0x01: 0x21, 0x08: 0x28, 0xC0: 0xC8, 0xC1: 0xC9, 0xC3: 0xCB, 0xC4: 0xCC, 0xC5: 0xCD, 0xC7: 0xCF}
_PLAIN_TAGS: Final = {v: k for k, v in GLO_TAGS.items()}


@dataclass(frozen=True, slots=True)
class SecurityKeys:
    """The global unicast encryption key EK and the authentication key AK (16 bytes each, suite 0)."""

    ek: bytes
    ak: bytes

    def __post_init__(self) -> None:
        if len(self.ek) != 16 or len(self.ak) != 16:
            raise ValueError("security suite 0 needs a 16-byte EK and a 16-byte AK")

    def __repr__(self) -> str:
        return "SecurityKeys(<hidden>)"  # keys never go to logs


@dataclass(frozen=True, slots=True)
class Deciphered:
    """A deciphered APDU: the plain ``apdu``, the sender's ``invocation_counter`` and the ``security`` control."""

    apdu: bytes
    invocation_counter: int
    security: int


def _check(system_title: bytes, invocation_counter: int, security: int) -> None:
    if len(system_title) != 8:
        raise ValueError(f"a system title has 8 bytes, got {len(system_title)}")
    if not 0 <= invocation_counter <= MAX_INVOCATION_COUNTER:
        raise ValueError(f"invocation counter {invocation_counter} outside 0..2^32-1 (renew the key)")
    if security & 0x0F or security & 0xC0 or not security & 0x30:
        raise ValueError(f"security control 0x{security:02X}: suite 0 with authentication and/or encryption only")


def _gcm(keys: SecurityKeys, iv: bytes, aad: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
    enc = Cipher(algorithms.AES(keys.ek), modes.GCM(iv, min_tag_length=TAG_LEN)).encryptor()
    enc.authenticate_additional_data(aad)
    body = enc.update(plaintext) + enc.finalize()
    return body, enc.tag[:TAG_LEN]


def cipher_apdu(
    apdu: bytes,
    *,
    system_title: bytes,
    invocation_counter: int,
    keys: SecurityKeys,
    security: int = SC_AUTHENTICATED_ENCRYPTED,
) -> bytes:
    """The glo-ciphered form of ``apdu`` (a GET/SET/ACTION request or response, or an xDLMS Initiate APDU)."""
    if not apdu or apdu[0] not in GLO_TAGS:
        raise ValueError(f"no global-ciphering tag for APDU tag 0x{apdu[:1].hex() or '--'}")
    _check(system_title, invocation_counter, security)
    sc = bytes((security,))
    ic = invocation_counter.to_bytes(4, "big")
    iv = system_title + ic
    if security & SC_ENCRYPTED:
        body, tag = _gcm(keys, iv, sc + keys.ak, apdu)
        if not security & SC_AUTHENTICATED:
            tag = b""
    else:  # authenticated only: the APDU travels in clear, the tag covers it
        body, tag = apdu, _gcm(keys, iv, sc + keys.ak + apdu, b"")[1]
    content = sc + ic + body + tag
    return bytes((GLO_TAGS[apdu[0]],)) + axdr.encode_length(len(content)) + content


def decipher_apdu(
    data: bytes,
    *,
    system_title: bytes,
    keys: SecurityKeys,
    last_invocation_counter: int | None = None,
) -> Deciphered:
    """Check and decipher a glo-ciphered APDU from the peer whose ``system_title`` is given.

    FrameError when malformed; ProtocolError naming ``deciphering-error`` when the tag does not verify (wrong key,
    tampering) and ``invocation-counter-error`` when the counter is not above ``last_invocation_counter`` (replay).
    """
    if not data or data[0] not in _PLAIN_TAGS:
        raise FrameError(f"ciphered APDU: unknown tag 0x{data[:1].hex() or '--'}")
    n, pos = axdr.decode_length(data, 1)
    if pos + n != len(data):
        raise FrameError(f"ciphered APDU: length {n}, {len(data) - pos} bytes follow")
    if n < 5:
        raise FrameError("ciphered APDU: no security header")
    security = data[pos]
    ic = int.from_bytes(data[pos + 1 : pos + 5], "big")
    body = data[pos + 5 :]
    try:
        _check(system_title, ic, security)
    except ValueError as exc:
        raise FrameError(f"ciphered APDU: {exc}") from exc
    if last_invocation_counter is not None and ic <= last_invocation_counter:
        raise ProtocolError(f"invocation-counter-error: {ic} is not above {last_invocation_counter} (replayed APDU?)")
    iv = system_title + ic.to_bytes(4, "big")
    sc = bytes((security,))
    if security & SC_AUTHENTICATED:
        if len(body) < TAG_LEN:
            raise FrameError("ciphered APDU: authentication tag truncated")
        body, tag = body[:-TAG_LEN], body[-TAG_LEN:]
    try:
        if security & SC_ENCRYPTED:
            dec = Cipher(algorithms.AES(keys.ek), modes.GCM(iv, min_tag_length=TAG_LEN)).decryptor()
            dec.authenticate_additional_data(sc + keys.ak)
            plain = dec.update(body)
            if security & SC_AUTHENTICATED:
                plain += dec.finalize_with_tag(tag)  # a truncated GCM tag is a prefix of the full one
        else:
            plain = body
            if not _same(_gcm(keys, iv, sc + keys.ak + plain, b"")[1], tag):
                raise InvalidTag
    except InvalidTag:
        raise ProtocolError(
            "deciphering-error: the authentication tag does not verify (wrong key or tampered)"
        ) from None
    if not plain or plain[0] != _PLAIN_TAGS[data[0]]:
        raise FrameError(f"ciphered APDU: tag 0x{data[0]:02X} does not match its content")
    return Deciphered(plain, ic, security)


def _same(a: bytes, b: bytes) -> bool:
    """Constant-time comparison (a tag check must not leak how many bytes matched)."""
    return hmac.compare_digest(a, b)


def gmac_tag(challenge: bytes, *, system_title: bytes, invocation_counter: int, keys: SecurityKeys) -> bytes:
    """GMAC(SC 0x10 || AK || challenge), 12 bytes, IV = system title || IC."""
    _check(system_title, invocation_counter, SC_AUTHENTICATED)
    iv = system_title + invocation_counter.to_bytes(4, "big")
    return _gcm(keys, iv, bytes((SC_AUTHENTICATED,)) + keys.ak + challenge, b"")[1]


def hls_gmac_response(challenge: bytes, *, system_title: bytes, invocation_counter: int, keys: SecurityKeys) -> bytes:
    """``f(challenge) = 0x10 || IC || GMAC``: what pass 3 (client, over StoC) and pass 4 (server, over CtoS) send."""
    if not 8 <= len(challenge) <= 64:
        raise ValueError(f"an HLS challenge has 8..64 bytes, got {len(challenge)}")
    tag = gmac_tag(challenge, system_title=system_title, invocation_counter=invocation_counter, keys=keys)
    return bytes((SC_AUTHENTICATED,)) + invocation_counter.to_bytes(4, "big") + tag


def verify_hls_gmac_response(
    response: bytes,
    challenge: bytes,
    *,
    system_title: bytes,
    keys: SecurityKeys,
    last_invocation_counter: int | None = None,
) -> int:
    """Check the peer's ``f(challenge)``; returns its invocation counter. ProtocolError when it does not verify."""
    if len(response) != 1 + 4 + TAG_LEN or response[0] != SC_AUTHENTICATED:
        raise ProtocolError(f"HLS-GMAC: malformed response ({len(response)} bytes, SC {response[:1].hex()})")
    ic = int.from_bytes(response[1:5], "big")
    if last_invocation_counter is not None and ic <= last_invocation_counter:
        raise ProtocolError(f"HLS-GMAC: invocation counter {ic} is not above {last_invocation_counter}")
    expected = gmac_tag(challenge, system_title=system_title, invocation_counter=ic, keys=keys)
    if not _same(expected, response[5:]):
        raise ProtocolError("HLS-GMAC: authentication failure (the peer does not hold the keys)")
    return ic
