"""ACSE association APDUs for DLMS/COSEM (Green Book clause 9.3, BER-encoded, IEC 8650 AARQ/AARE/RLRQ/RLRE).

AARQ ``60 len`` fields (context-specific tags, all optional except the context)::

    A1 09 06 07 60 85 74 05 08 01 cc    application-context-name 2.16.756.5.8.1.cc (1 LN, 3 LN ciphered)
    A6 0A 04 08 <system title>          calling-AP-title (HLS-GMAC: the client system title)
    8A 02 07 80                         sender-acse-requirements: authentication
    8B 07 60 85 74 05 08 02 mm          mechanism-name 2.16.756.5.8.2.mm (1 LLS, 5 HLS-GMAC)
    AC len 80 len <password/challenge>  calling-authentication-value
    BE len 04 len <xDLMS InitiateRequest, or glo-initiate-request 0x21 when ciphered>

AARE ``61 len``: A1 context, ``A2 03 02 01 r`` result (0 accepted, 1 rejected-permanent, 2 rejected-transient),
``A3 05 A1|A2 03 02 01 d`` diagnostic (A1 acse-service-user, A2 acse-service-provider), A4 responding-AP-title,
88 responder-acse-requirements, 89 mechanism, AA responding-authentication-value (the HLS challenge), BE user info
(InitiateResponse ``08 00 06 5F 1F 04 00 <conformance 3> <max pdu 2> 00 07`` or confirmedServiceError ``0E ..``).
RLRQ ``62 03 80 01 00`` and RLRE ``63 03 80 01 00`` carry the release reason (0 normal).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from amiflow.errors import FrameError

__all__ = [
    "CONFORMANCE_CLIENT",
    "CONFORMANCE_SERVER",
    "Aare",
    "Aarq",
    "AcseDiagnostic",
    "AssociationResult",
    "ContextName",
    "InitiateRequest",
    "InitiateResponse",
    "Mechanism",
    "Rlre",
    "Rlrq",
    "ber_tlvs",
]

_OID_PREFIX_CONTEXT: Final = bytes.fromhex("608574050801")
_OID_PREFIX_MECH: Final = bytes.fromhex("608574050802")
_CONTEXTS: Final = frozenset({1, 2, 3, 4})  # ContextName values
CONFORMANCE_CLIENT: Final = 0x007E1F  # get, set, action, selective access, block transfer, multiple references
CONFORMANCE_SERVER: Final = 0x00501F  # block transfer with get, multiple references, get/set/selective/action


class ContextName(enum.IntEnum):
    LN = 1
    SN = 2
    LN_CIPHERED = 3
    SN_CIPHERED = 4


class Mechanism(enum.IntEnum):
    NONE = 0
    LLS = 1
    HLS = 2
    HLS_MD5 = 3
    HLS_SHA1 = 4
    HLS_GMAC = 5
    HLS_SHA256 = 6


class AssociationResult(enum.IntEnum):
    ACCEPTED = 0
    REJECTED_PERMANENT = 1
    REJECTED_TRANSIENT = 2


class AcseDiagnostic(enum.IntEnum):
    """acse-service-user diagnostics."""

    NULL = 0
    NO_REASON_GIVEN = 1
    APPLICATION_CONTEXT_NAME_NOT_SUPPORTED = 2
    AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNISED = 11
    AUTHENTICATION_MECHANISM_NAME_REQUIRED = 12
    AUTHENTICATION_FAILURE = 13
    AUTHENTICATION_REQUIRED = 14


def _ber_len(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes((tag,)) + _ber_len(len(value)) + value


def ber_tlvs(data: bytes) -> list[tuple[int, bytes]]:
    """Split a sequence of single-byte-tag BER TLVs; FrameError when truncated."""
    out = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise FrameError("BER: TLV truncated")
        tag, first = data[pos], data[pos + 1]
        pos += 2
        if first & 0x80:
            n = first & 0x7F
            if n == 0 or n > 3 or pos + n > len(data):
                raise FrameError("BER: bad length")
            length = int.from_bytes(data[pos : pos + n], "big")
            pos += n
        else:
            length = first
        if pos + length > len(data):
            raise FrameError(f"BER: tag 0x{tag:02X} announces {length} bytes, {len(data) - pos} left")
        out.append((tag, data[pos : pos + length]))
        pos += length
    return out


def _outer(data: bytes, tag: int, name: str) -> bytes:
    tlvs = ber_tlvs(data)
    if len(tlvs) != 1 or tlvs[0][0] != tag:
        raise FrameError(f"{name}: expected one 0x{tag:02X} element")
    return tlvs[0][1]


def _oid_last(value: bytes, prefix: bytes, name: str) -> int:
    if len(value) != 9 or value[0] != 0x06 or value[1] != 7 or value[2:8] != prefix:
        raise FrameError(f"{name}: not a DLMS UA object identifier: {value.hex()}")
    return value[8]


def _mechanism(value: bytes, name: str) -> Mechanism:
    mech = _oid_last(b"\x06\x07" + value, _OID_PREFIX_MECH, name)
    try:
        return Mechanism(mech)
    except ValueError:
        known = ", ".join(f"{m.value} {m.name}" for m in Mechanism)
        raise FrameError(f"{name}: unknown authentication mechanism id {mech} (known: {known})") from None


def _context(value: int) -> bytes:
    return _tlv(0xA1, b"\x06\x07" + _OID_PREFIX_CONTEXT + bytes((value,)))


def _int_field(tag: int, value: bytes, name: str) -> int:
    if len(value) < 3 or value[0] != 0x02 or value[1] != len(value) - 2:
        raise FrameError(f"{name}: bad INTEGER field 0x{tag:02X}")
    return int.from_bytes(value[2:], "big")


def _octets_in(value: bytes, inner_tag: int, name: str) -> bytes:
    (tag, body), *rest = ber_tlvs(value) or [(0, b"")]
    if tag != inner_tag or rest:
        raise FrameError(f"{name}: expected an inner 0x{inner_tag:02X} element")
    return body


@dataclass(frozen=True, slots=True)
class InitiateRequest:
    """xDLMS InitiateRequest (inside the AARQ user-information)."""

    conformance: int = CONFORMANCE_CLIENT
    max_pdu: int = 0xFFFF
    dlms_version: int = 6
    dedicated_key: bytes | None = None

    def to_bytes(self) -> bytes:
        key = b"\x01" + bytes((len(self.dedicated_key),)) + self.dedicated_key if self.dedicated_key else b"\x00"
        return (
            b"\x01"
            + key
            + b"\x00\x00"
            + bytes((self.dlms_version,))
            + b"\x5f\x1f\x04\x00"
            + self.conformance.to_bytes(3, "big")
            + self.max_pdu.to_bytes(2, "big")
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> InitiateRequest:
        try:
            if raw[0] != 0x01:
                raise FrameError(f"InitiateRequest: tag 0x{raw[0]:02X} (0x21 is a ciphered request)")
            pos, key = 2, None
            if raw[1]:
                key = raw[3 : 3 + raw[2]]
                pos = 3 + raw[2]
            pos += 1 if raw[pos] == 0 else 2  # response-allowed (default true)
            pos += 1 if raw[pos] == 0 else 2  # proposed-quality-of-service
            version = raw[pos]
            if raw[pos + 1 : pos + 4] != b"\x5f\x1f\x04":
                raise FrameError("InitiateRequest: conformance block missing")
            conformance = int.from_bytes(raw[pos + 5 : pos + 8], "big")
            max_pdu = int.from_bytes(raw[pos + 8 : pos + 10], "big")
            if pos + 10 != len(raw):
                raise FrameError("InitiateRequest: wrong length")
        except IndexError as exc:
            raise FrameError("InitiateRequest: truncated") from exc
        return cls(conformance, max_pdu, version, key)


@dataclass(frozen=True, slots=True)
class InitiateResponse:
    """xDLMS InitiateResponse (inside the AARE user-information); ``vaa_name`` 0x0007 for LN referencing."""

    conformance: int = CONFORMANCE_SERVER
    max_pdu: int = 0x0400
    dlms_version: int = 6
    vaa_name: int = 0x0007

    def to_bytes(self) -> bytes:
        return (
            b"\x08\x00"
            + bytes((self.dlms_version,))
            + b"\x5f\x1f\x04\x00"
            + self.conformance.to_bytes(3, "big")
            + self.max_pdu.to_bytes(2, "big")
            + self.vaa_name.to_bytes(2, "big")
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> InitiateResponse:
        if len(raw) < 14 or raw[0] != 0x08:
            raise FrameError(f"InitiateResponse: unexpected {raw[:2].hex()} ({len(raw)} bytes)")
        pos = 2 if raw[1] == 0 else 3
        if raw[pos + 1 : pos + 4] != b"\x5f\x1f\x04" or len(raw) != pos + 12:
            raise FrameError("InitiateResponse: malformed")
        return cls(
            int.from_bytes(raw[pos + 5 : pos + 8], "big"),
            int.from_bytes(raw[pos + 8 : pos + 10], "big"),
            raw[pos],
            int.from_bytes(raw[pos + 10 : pos + 12], "big"),
        )


@dataclass(frozen=True, slots=True)
class Aarq:
    """AARQ; ``user_information`` is the InitiateRequest bytes (or a ciphered glo-initiate-request)."""

    context: ContextName = ContextName.LN
    mechanism: Mechanism = Mechanism.NONE
    auth_value: bytes | None = None
    calling_ap_title: bytes | None = None
    user_information: bytes = InitiateRequest().to_bytes()

    def to_bytes(self) -> bytes:
        body = _context(self.context)
        if self.calling_ap_title is not None:
            body += _tlv(0xA6, _tlv(0x04, self.calling_ap_title))
        if self.mechanism is not Mechanism.NONE:
            body += b"\x8a\x02\x07\x80" + _tlv(0x8B, _OID_PREFIX_MECH + bytes((self.mechanism,)))
            if self.auth_value is not None:
                body += _tlv(0xAC, _tlv(0x80, self.auth_value))
        body += _tlv(0xBE, _tlv(0x04, self.user_information))
        return _tlv(0x60, body)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Aarq:
        context: int | None = None
        mechanism, auth, title, user = Mechanism.NONE, None, None, b""
        for tag, value in ber_tlvs(_outer(raw, 0x60, "AARQ")):
            if tag == 0xA1:
                context = _oid_last(value, _OID_PREFIX_CONTEXT, "AARQ context")
            elif tag == 0x8B:
                mechanism = _mechanism(value, "AARQ mechanism")
            elif tag == 0xAC:
                auth = _octets_in(value, 0x80, "AARQ authentication value")
            elif tag == 0xA6:
                title = _octets_in(value, 0x04, "AARQ calling-AP-title")
            elif tag == 0xBE:
                user = _octets_in(value, 0x04, "AARQ user-information")
        if context is None or context not in _CONTEXTS:
            raise FrameError("AARQ: application context name missing or unknown")
        return cls(ContextName(context), mechanism, auth, title, user)


@dataclass(frozen=True, slots=True)
class Aare:
    """AARE; ``diagnostic_provider`` is True when the diagnostic is an acse-service-provider one."""

    result: AssociationResult = AssociationResult.ACCEPTED
    diagnostic: int = 0
    context: ContextName = ContextName.LN
    mechanism: Mechanism = Mechanism.NONE
    responding_ap_title: bytes | None = None
    auth_value: bytes | None = None
    user_information: bytes = b""
    diagnostic_provider: bool = False

    def to_bytes(self) -> bytes:
        body = _context(self.context)
        body += b"\xa2\x03\x02\x01" + bytes((self.result,))
        body += _tlv(0xA3, _tlv(0xA2 if self.diagnostic_provider else 0xA1, b"\x02\x01" + bytes((self.diagnostic,))))
        if self.responding_ap_title is not None:
            body += _tlv(0xA4, _tlv(0x04, self.responding_ap_title))
        if self.mechanism is not Mechanism.NONE:
            body += b"\x88\x02\x07\x80" + _tlv(0x89, _OID_PREFIX_MECH + bytes((self.mechanism,)))
            if self.auth_value is not None:
                body += _tlv(0xAA, _tlv(0x80, self.auth_value))
        if self.user_information:
            body += _tlv(0xBE, _tlv(0x04, self.user_information))
        return _tlv(0x61, body)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Aare:
        context: int | None = None
        result: int | None = None
        diag, provider = 0, False
        mechanism, title, auth, user = Mechanism.NONE, None, None, b""
        for tag, value in ber_tlvs(_outer(raw, 0x61, "AARE")):
            if tag == 0xA1:
                context = _oid_last(value, _OID_PREFIX_CONTEXT, "AARE context")
            elif tag == 0xA2:
                result = _int_field(tag, value, "AARE result")
            elif tag == 0xA3:
                inner_tlvs = ber_tlvs(value) or [(0, b"")]
                if len(inner_tlvs) != 1:
                    raise FrameError(f"AARE diagnostic: expected one element, found {len(inner_tlvs)}")
                ((inner, body),) = inner_tlvs
                provider = inner == 0xA2
                diag = _int_field(tag, body, "AARE diagnostic")
            elif tag == 0x89:
                mechanism = _mechanism(value, "AARE mechanism")
            elif tag == 0xA4:
                title = _octets_in(value, 0x04, "AARE responding-AP-title")
            elif tag == 0xAA:
                auth = _octets_in(value, 0x80, "AARE authentication value")
            elif tag == 0xBE:
                user = _octets_in(value, 0x04, "AARE user-information")
        if context is None or context not in _CONTEXTS or result not in (0, 1, 2):
            raise FrameError("AARE: context name or result missing")
        return cls(AssociationResult(result), diag, ContextName(context), mechanism, title, auth, user, provider)

    def reason(self) -> str:
        """A readable reason for a refused association."""
        if self.diagnostic_provider:
            return f"acse-service-provider diagnostic {self.diagnostic}"
        try:
            name = AcseDiagnostic(self.diagnostic).name.lower().replace("_", "-")
        except ValueError:
            name = f"diagnostic {self.diagnostic}"
        if self.user_information[:1] == b"\x0e":
            name += f" (confirmedServiceError {self.user_information[1:].hex()})"
        return f"{AssociationResult(self.result).name.lower().replace('_', '-')}: {name}"


@dataclass(frozen=True, slots=True)
class Rlrq:
    """Release request; reason 0 = normal."""

    reason: int = 0

    def to_bytes(self) -> bytes:
        return bytes((0x62, 0x03, 0x80, 0x01, self.reason))

    @classmethod
    def from_bytes(cls, raw: bytes) -> Rlrq:
        fields = dict(ber_tlvs(_outer(raw, 0x62, "RLRQ")))
        return cls(fields.get(0x80, b"\x00")[:1][0] if fields.get(0x80) else 0)


@dataclass(frozen=True, slots=True)
class Rlre:
    """Release response; reason 0 = normal."""

    reason: int = 0

    def to_bytes(self) -> bytes:
        return bytes((0x63, 0x03, 0x80, 0x01, self.reason))

    @classmethod
    def from_bytes(cls, raw: bytes) -> Rlre:
        fields = dict(ber_tlvs(_outer(raw, 0x63, "RLRE")))
        return cls(fields.get(0x80, b"\x00")[:1][0] if fields.get(0x80) else 0)
