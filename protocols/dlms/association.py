"""The client side of a DLMS/COSEM application association, sans-I/O (Green Book clause 9.4.6).

One state machine: IDLE -aarq-> AWAITING_AARE -accepted-> ASSOCIATED -rlrq-> AWAITING_RLRE -rlre-> RELEASED.
In ASSOCIATED one confirmed request is outstanding at a time; its response either completes it (a result event) or
asks for another request (:class:`Continue`: GET-Request-Next for the next block of a long GET, or the next
SET-Request-With-Datablock of a long SET). Invoke ids cycle 0..15 and every response must carry the request's id.

Authentication: none (public client), LLS (password in the AARQ), or HLS-GMAC with security suite 0 (``ciphering``):
the AARQ carries the ciphered context, mechanism 5, our system title and challenge CtoS and a glo-ciphered
InitiateRequest; the AARE (diagnostic authentication-required) the meter's system title and StoC; then
AWAITING_HLS -> :meth:`hls_reply` (pass 3, f(StoC)) and :meth:`on_hls_answer` (pass 4, the meter's f(CtoS)) ->
ASSOCIATED. Every later request and response is glo-ciphered, the counters checked against replay.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from amiflow.errors import ConnectError, FrameError, ProtocolError
from amiflow.types import Obis

from . import axdr
from .acse import (
    Aare,
    Aarq,
    AcseDiagnostic,
    AssociationResult,
    ContextName,
    InitiateRequest,
    InitiateResponse,
    Mechanism,
    Rlre,
)
from .ciphering import Ciphering, CipherSession
from .xdlms import (
    AccessSelection,
    ActionRequest,
    ActionResponse,
    AttributeDescriptor,
    ExceptionResponse,
    GetRequest,
    GetResponse,
    SetRequest,
    SetResponse,
    parse_xdlms,
)

__all__ = [
    "ActionOutcome",
    "AssociationState",
    "ClientAssociation",
    "Continue",
    "GetResult",
    "SetOutcome",
    "Stale",
]

MAX_BLOCKS: Final = 10_000
_ASSOCIATION_METHOD: Final = AttributeDescriptor(15, Obis(0, 0, 40, 0, 0, 255), 1)  # reply_to_HLS_authentication
MAX_LONG_GET: Final = 16 * 1024 * 1024


class AssociationState(enum.Enum):
    IDLE = "idle"
    AWAITING_AARE = "awaiting-aare"
    AWAITING_HLS = "awaiting-hls"  # HLS-GMAC: AARE accepted, pass 3/4 (reply_to_HLS_authentication) still due
    ASSOCIATED = "associated"
    AWAITING_RLRE = "awaiting-rlre"
    RELEASED = "released"


_TRANSITIONS: Final = {
    (AssociationState.IDLE, "aarq"): AssociationState.AWAITING_AARE,
    (AssociationState.RELEASED, "aarq"): AssociationState.AWAITING_AARE,
    (AssociationState.AWAITING_AARE, "accepted"): AssociationState.ASSOCIATED,
    (AssociationState.AWAITING_AARE, "refused"): AssociationState.IDLE,
    (AssociationState.AWAITING_AARE, "challenged"): AssociationState.AWAITING_HLS,
    (AssociationState.AWAITING_HLS, "authenticated"): AssociationState.ASSOCIATED,
    (AssociationState.AWAITING_HLS, "refused"): AssociationState.IDLE,
    (AssociationState.ASSOCIATED, "rlrq"): AssociationState.AWAITING_RLRE,
    (AssociationState.AWAITING_RLRE, "rlre"): AssociationState.RELEASED,
}


@dataclass(frozen=True, slots=True)
class Continue:
    """Send ``request`` and keep waiting for the response of the same operation."""

    request: bytes


@dataclass(frozen=True, slots=True)
class Stale:
    """A response whose invoke id is not the outstanding request's: ignore it and keep waiting."""

    apdu: bytes


@dataclass(frozen=True, slots=True)
class GetResult:
    """Per requested attribute: the A-XDR bytes of its value, or a data-access-result code."""

    items: tuple[tuple[bytes | None, int | None], ...]


@dataclass(frozen=True, slots=True)
class SetOutcome:
    result: int


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    result: int
    data: bytes | None = None


Outcome = Continue | GetResult | SetOutcome | ActionOutcome | Stale


class ClientAssociation:
    """Builds request APDUs and interprets response APDUs for one association."""

    def __init__(
        self,
        *,
        password: bytes | None = None,
        max_pdu: int = 0xFFFF,
        ciphering: Ciphering | None = None,
        counter_key: str = "client",
        challenge: bytes | None = None,
    ) -> None:
        """``ciphering`` turns on HLS-GMAC with security suite 0; ``challenge`` is our CtoS (8..64 random bytes,
        required with ciphering: this module draws no random numbers)."""
        if ciphering is not None and (challenge is None or not 8 <= len(challenge) <= 64):
            raise ValueError("HLS-GMAC needs a random challenge of 8..64 bytes")
        self.state = AssociationState.IDLE
        self._cipher = CipherSession(ciphering, ciphering.counter_key or counter_key) if ciphering else None
        self._challenge = challenge or b""
        self._server_challenge = b""
        self.password = password
        self.max_pdu = max_pdu
        self.server_max_pdu = 0xFFFF
        self.negotiated: InitiateResponse | None = None
        self._invoke = 0
        self._op: str | None = None
        self._iid = 0
        self._blocks: list[bytes] = []
        self._next_block = 1
        self._set_chunks: list[bytes] = []

    def _move(self, event: str) -> None:
        nxt = _TRANSITIONS.get((self.state, event))
        if nxt is None:
            raise ProtocolError(f"DLMS association: {event} is not allowed in state {self.state.value}")
        self.state = nxt

    # -- association ---------------------------------------------------------------------------------------------
    def aarq(self) -> bytes:
        self._move("aarq")
        initiate = InitiateRequest(max_pdu=self.max_pdu).to_bytes()
        if self._cipher is not None:
            return Aarq(
                context=ContextName.LN_CIPHERED,
                mechanism=Mechanism.HLS_GMAC,
                auth_value=self._challenge,
                calling_ap_title=self._cipher.ciphering.system_title,
                user_information=self._cipher.wrap(initiate),
            ).to_bytes()
        mechanism = Mechanism.LLS if self.password is not None else Mechanism.NONE
        return Aarq(mechanism=mechanism, auth_value=self.password, user_information=initiate).to_bytes()

    def on_aare(self, apdu: bytes) -> Aare:
        """Accept the AARE, or raise ConnectError naming the refusal reason."""
        if apdu[:1] == b"\xd8":
            self._move("refused")
            raise ConnectError(f"association refused: {ExceptionResponse.from_bytes(apdu).describe()}")
        aare = Aare.from_bytes(apdu)
        if aare.result is not AssociationResult.ACCEPTED:
            self._move("refused")
            raise ConnectError(f"association refused ({aare.reason()})")
        try:
            info = aare.user_information
            if self._cipher is not None:
                self._cipher.peer_title = aare.responding_ap_title
                if aare.mechanism is not Mechanism.HLS_GMAC or aare.auth_value is None or info[:1] != b"\x28":
                    raise ProtocolError("the AARE is not an HLS-GMAC answer (no StoC or ciphered InitiateResponse)")
                info = self._cipher.unwrap(info)
            self.negotiated = InitiateResponse.from_bytes(info)
        except (FrameError, ProtocolError) as exc:
            self._move("refused")
            raise ConnectError(f"association refused: {exc}") from exc
        self.server_max_pdu = self.negotiated.max_pdu or 0xFFFF
        if self._cipher is not None:
            if aare.diagnostic != AcseDiagnostic.AUTHENTICATION_REQUIRED:
                self._move("refused")
                raise ConnectError("association refused: an HLS AARE must ask for authentication (diagnostic 14)")
            self._server_challenge = aare.auth_value or b""
            self._move("challenged")
            return aare
        self._move("accepted")
        return aare

    def hls_reply(self) -> bytes:
        """HLS pass 3: ACTION reply_to_HLS_authentication (class 15, 0-0:40.0.0, method 1) with f(StoC)."""
        if self.state is not AssociationState.AWAITING_HLS or self._cipher is None:
            raise ProtocolError(f"DLMS: no HLS pass 3 in association state {self.state.value}")
        proof = axdr.encode(self._cipher.prove(self._server_challenge))
        self._invoke = (self._invoke + 1) % 16
        self._iid = 0xC0 | self._invoke
        return self._cipher.wrap(ActionRequest(self._iid, _ASSOCIATION_METHOD, proof).to_bytes())

    def on_hls_answer(self, apdu: bytes) -> None:
        """HLS pass 4: the meter's f(CtoS) in the ACTION answer; ConnectError when it does not verify."""
        assert self._cipher is not None
        try:
            msg = parse_xdlms(self._cipher.unwrap(apdu))
            if isinstance(msg, ExceptionResponse):
                raise ProtocolError(f"exception-response: {msg.describe()}")
            if not isinstance(msg, ActionResponse) or msg.invoke_id != self._iid:
                raise ProtocolError("the answer to reply_to_HLS_authentication is not its ACTION-Response")
            if msg.result != 0 or msg.data is None:
                raise ProtocolError(f"the meter refused our f(StoC) (action-result {msg.result})")
            proof = axdr.decode(msg.data)
            if not isinstance(proof, bytes):
                raise ProtocolError("the meter's f(CtoS) is not an octet-string")
            self._cipher.check(proof, self._challenge)
        except (FrameError, ProtocolError) as exc:
            self._move("refused")
            raise ConnectError(f"association refused: HLS-GMAC {exc}") from exc
        self._move("authenticated")

    def release(self) -> bytes:
        self._move("rlrq")
        return b"\x62\x03\x80\x01\x00"

    def on_rlre(self, apdu: bytes) -> None:
        Rlre.from_bytes(apdu)
        self._move("rlre")

    # -- requests ------------------------------------------------------------------------------------------------
    def _start(self, op: str) -> int:
        if self.state is not AssociationState.ASSOCIATED:
            raise ProtocolError(f"DLMS: cannot {op} in association state {self.state.value}")
        self._invoke = (self._invoke + 1) % 16
        self._iid = 0xC0 | self._invoke
        self._op = op
        self._blocks, self._next_block = [], 1
        return self._iid

    def get(self, desc: AttributeDescriptor, access: AccessSelection | None = None) -> bytes:
        return self._out(GetRequest(1, self._start("get"), ((desc, access),)).to_bytes())

    def get_with_list(self, items: Sequence[tuple[AttributeDescriptor, AccessSelection | None]]) -> bytes:
        return self._out(GetRequest(3, self._start("get"), tuple(items)).to_bytes())

    def set(self, desc: AttributeDescriptor, data: bytes, access: AccessSelection | None = None) -> bytes:
        iid = self._start("set")
        normal = SetRequest(1, iid, desc, data, access).to_bytes()
        if len(normal) <= self.server_max_pdu:
            return self._out(normal)
        room = max(self.server_max_pdu - 32, 16)
        chunks = [data[i : i + room] for i in range(0, len(data), room)]
        self._set_chunks = chunks[1:]
        return self._out(SetRequest(2, iid, desc, chunks[0], access, last=not self._set_chunks, block=1).to_bytes())

    def action(self, desc: AttributeDescriptor, data: bytes | None = None) -> bytes:
        return self._out(ActionRequest(self._start("action"), desc, data).to_bytes())

    def _out(self, apdu: bytes) -> bytes:
        return self._cipher.wrap(apdu) if self._cipher is not None else apdu

    # -- responses -----------------------------------------------------------------------------------------------
    def on_response(self, apdu: bytes) -> Outcome:
        """Interpret the response to the outstanding request; ProtocolError for a wrong or exception answer."""
        if self._op is None:
            raise ProtocolError("DLMS: a response arrived with no request outstanding")
        if self._cipher is not None:
            apdu = self._cipher.unwrap(apdu)
        msg = parse_xdlms(apdu)
        if isinstance(msg, ExceptionResponse):
            self._op = None
            raise ProtocolError(f"exception-response: {msg.describe()}")
        if getattr(msg, "invoke_id", None) != self._iid:
            return Stale(apdu)  # a late answer to an earlier request (after a timeout): not ours
        if self._op == "get" and isinstance(msg, GetResponse):
            return self._on_get(msg)
        if self._op == "set" and isinstance(msg, SetResponse):
            return self._on_set(msg)
        if self._op == "action" and isinstance(msg, ActionResponse):
            self._op = None
            return ActionOutcome(msg.result, msg.data)
        raise ProtocolError(f"DLMS: {type(msg).__name__} does not answer a {self._op} request")

    def _on_get(self, msg: GetResponse) -> Outcome:
        if msg.kind != 2:
            self._op = None
            return GetResult(msg.results)
        raw, err = msg.results[0]
        if err is not None or raw is None:
            self._op = None
            return GetResult(((None, err),))
        if msg.block != self._next_block:
            self._op = None
            raise ProtocolError(f"DLMS: block {msg.block} arrived, expected {self._next_block}")
        self._blocks.append(raw)
        if sum(len(b) for b in self._blocks) > MAX_LONG_GET or len(self._blocks) > MAX_BLOCKS:
            self._op = None
            raise ProtocolError("DLMS: long GET exceeds the size bound")
        if not msg.last:
            self._next_block += 1
            return Continue(self._out(GetRequest(2, self._iid, block=msg.block).to_bytes()))
        self._op = None
        return GetResult(((b"".join(self._blocks), None),))

    def _on_set(self, msg: SetResponse) -> Outcome:
        if msg.kind == 2 and self._set_chunks:
            chunk = self._set_chunks.pop(0)
            block = msg.block + 1
            return Continue(
                self._out(SetRequest(3, self._iid, None, chunk, last=not self._set_chunks, block=block).to_bytes())
            )
        self._op = None
        return SetOutcome(msg.result)


def decode_value(raw: bytes) -> object:
    """A-XDR bytes of a GET result -> Python value (see :mod:`protocols.dlms.axdr`)."""
    return axdr.decode(raw)
