"""The server side of DLMS/COSEM associations, sans-I/O: what a meter (or amiflow's simulator) runs.

:class:`ServerAssociation` takes request APDUs from one client SAP and returns response APDUs. It checks the AARQ
against the client's :class:`ClientPolicy` (mechanism, LLS password, access level), keeps the negotiated PDU size,
splits long GET answers into GET-Response-With-Datablock blocks (the client fetches each with GET-Request-Next),
reassembles SET-Request-With-Datablock, and hands the attribute and method calls to an :class:`ObjectModel`.
Requests outside an association are answered with an exception-response (service-not-allowed).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, Protocol

from amiflow.errors import FrameError, ProtocolError

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
    ActionResult,
    AttributeDescriptor,
    DataAccessResult,
    ExceptionResponse,
    GetRequest,
    GetResponse,
    SetRequest,
    SetResponse,
    parse_xdlms,
)

__all__ = ["AccessLevel", "ClientPolicy", "ObjectModel", "ServerAssociation"]

_BLOCK_OVERHEAD: Final = 16


class AccessLevel(enum.IntEnum):
    """What an association may do: READ (GET only) or MANAGE (GET, SET, ACTION)."""

    READ = 1
    MANAGE = 2


@dataclass(frozen=True, slots=True)
class ClientPolicy:
    """How a client SAP must authenticate and what it may then do."""

    mechanism: Mechanism = Mechanism.NONE
    password: bytes | None = None
    access: AccessLevel = AccessLevel.READ


class ObjectModel(Protocol):
    """The meter's objects. ``get`` returns A-XDR bytes or a DataAccessResult code."""

    def get(self, desc: AttributeDescriptor, access: AccessSelection | None, level: AccessLevel) -> bytes | int: ...

    def set(self, desc: AttributeDescriptor, data: bytes, level: AccessLevel) -> int: ...

    def action(self, desc: AttributeDescriptor, data: bytes | None, level: AccessLevel) -> tuple[int, bytes | None]: ...


class ServerAssociation:
    """One client's association with a server logical device."""

    def __init__(
        self,
        model: ObjectModel,
        policy: ClientPolicy | None,
        *,
        max_pdu: int = 1024,
        ciphering: Ciphering | None = None,
        challenge: bytes = b"",
        peer_counters: dict[bytes, int] | None = None,
    ) -> None:
        """``ciphering`` (our system title, keys, counter store) serves HLS-GMAC clients; ``challenge`` is the
        StoC of this association (8..64 random bytes from the caller); ``peer_counters`` remembers each client
        system title's last invocation counter across associations (replay protection)."""
        self._ciphering = ciphering
        self._challenge = challenge
        self._peer_counters = peer_counters if peer_counters is not None else {}
        self._session: CipherSession | None = None
        self._client_challenge = b""
        self._hls_pending = False
        self.model = model
        self.policy = policy
        self.max_pdu = max_pdu
        self.client_max_pdu = max_pdu
        self.associated = False
        self.refusal: str | None = None
        self._long_get: tuple[int, list[bytes], int] | None = None  # (invoke id, blocks, last block sent)
        self._long_set: tuple[AttributeDescriptor, bytearray, int] | None = None

    def handle(self, apdu: bytes) -> bytes | None:
        """The response to one request APDU (None for requests that are not answered)."""
        if not apdu:
            return None
        tag = apdu[0]
        if tag == 0x60:
            return self._on_aarq(apdu)
        if tag == 0x62:
            self.associated = False
            return Rlre(0).to_bytes()
        session = self._session
        if session is not None and (self.associated or self._hls_pending):
            try:
                apdu = session.unwrap(apdu)
            except ProtocolError as exc:
                return ExceptionResponse(1, 6 if "invocation-counter" in str(exc) else 5).to_bytes()
            except FrameError:
                return ExceptionResponse(2, 2).to_bytes()
            if session.peer_title is not None and session.peer_last_counter is not None:
                self._peer_counters[session.peer_title] = session.peer_last_counter
        if self._hls_pending:
            return self._on_hls_reply(apdu)
        if not self.associated:
            return ExceptionResponse(1, 1).to_bytes()
        try:
            msg = parse_xdlms(apdu)
        except FrameError:
            return ExceptionResponse(2, 2).to_bytes()
        if isinstance(msg, GetRequest):
            answer = self._on_get(msg)
        elif isinstance(msg, SetRequest):
            answer = self._on_set(msg)
        elif isinstance(msg, ActionRequest):
            answer = self._on_action(msg)
        else:
            return ExceptionResponse(2, 2).to_bytes()
        return session.wrap(answer) if session is not None else answer

    # -- association -----------------------------------------------------------------------------------------------
    def _on_aarq(self, apdu: bytes) -> bytes:
        try:
            aarq = Aarq.from_bytes(apdu)
        except (FrameError, ValueError):
            return self._refuse(AcseDiagnostic.NO_REASON_GIVEN, "malformed AARQ")
        policy = self.policy
        if policy is None:
            return self._refuse(AcseDiagnostic.NO_REASON_GIVEN, "unknown client SAP")
        hls = policy.mechanism is Mechanism.HLS_GMAC and aarq.mechanism is Mechanism.HLS_GMAC
        if aarq.context is not (ContextName.LN_CIPHERED if hls else ContextName.LN):
            return self._refuse(AcseDiagnostic.APPLICATION_CONTEXT_NAME_NOT_SUPPORTED, "context")
        if policy.mechanism is Mechanism.LLS:
            if aarq.mechanism is not Mechanism.LLS or aarq.auth_value is None:
                return self._refuse(AcseDiagnostic.AUTHENTICATION_MECHANISM_NAME_REQUIRED, "LLS required")
            if aarq.auth_value != policy.password:
                return self._refuse(AcseDiagnostic.AUTHENTICATION_FAILURE, "wrong password")
        elif policy.mechanism is not Mechanism.NONE:
            if aarq.mechanism is not policy.mechanism:
                return self._refuse(AcseDiagnostic.AUTHENTICATION_MECHANISM_NAME_REQUIRED, "HLS required")
            if policy.mechanism is not Mechanism.HLS_GMAC or self._ciphering is None:
                return self._refuse(AcseDiagnostic.AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNISED, "HLS not served")
            return self._on_hls_aarq(aarq, self._ciphering)
        try:
            initiate = InitiateRequest.from_bytes(aarq.user_information)
        except FrameError:
            return self._refuse(AcseDiagnostic.NO_REASON_GIVEN, "bad InitiateRequest")
        if initiate.dlms_version < 6:
            aare = Aare(AssociationResult.REJECTED_PERMANENT, 1, user_information=b"\x0e\x01\x06\x01")
            self.refusal = "dlms-version-too-low"
            return aare.to_bytes()
        self.client_max_pdu = min(initiate.max_pdu or 0xFFFF, self.max_pdu) if initiate.max_pdu >= 64 else 64
        self.associated = True
        self.refusal = None
        return Aare(
            mechanism=aarq.mechanism if policy.mechanism is not Mechanism.NONE else Mechanism.NONE,
            user_information=InitiateResponse(max_pdu=self.max_pdu).to_bytes(),
        ).to_bytes()

    def _on_hls_aarq(self, aarq: Aarq, ciphering: Ciphering) -> bytes:
        """HLS-GMAC passes 1/2: check the client's title and challenge, decipher its InitiateRequest, send StoC."""
        title, challenge = aarq.calling_ap_title, aarq.auth_value
        if title is None or len(title) != 8 or challenge is None or not 8 <= len(challenge) <= 64:
            return self._refuse(AcseDiagnostic.NO_REASON_GIVEN, "HLS-GMAC needs a system title and a challenge")
        if not 8 <= len(self._challenge) <= 64:
            return self._refuse(AcseDiagnostic.NO_REASON_GIVEN, "no server challenge")
        session = CipherSession(ciphering, f"server:{title.hex()}", peer_last_counter=self._peer_counters.get(title))
        session.peer_title = title
        try:
            initiate = InitiateRequest.from_bytes(session.unwrap(aarq.user_information))
        except (FrameError, ProtocolError):
            return self._refuse(AcseDiagnostic.AUTHENTICATION_FAILURE, "deciphering-error")  # wrong key or replay
        if session.peer_last_counter is not None:
            self._peer_counters[title] = session.peer_last_counter
        self.client_max_pdu = min(initiate.max_pdu or 0xFFFF, self.max_pdu) if initiate.max_pdu >= 64 else 64
        self._session, self._client_challenge, self._hls_pending = session, challenge, True
        self.associated, self.refusal = False, None
        return Aare(
            AssociationResult.ACCEPTED,
            AcseDiagnostic.AUTHENTICATION_REQUIRED,
            ContextName.LN_CIPHERED,
            Mechanism.HLS_GMAC,
            responding_ap_title=ciphering.system_title,
            auth_value=self._challenge,
            user_information=session.wrap(InitiateResponse(max_pdu=self.max_pdu).to_bytes()),
        ).to_bytes()

    def _on_hls_reply(self, apdu: bytes) -> bytes:
        """HLS-GMAC passes 3/4: only reply_to_HLS_authentication is served until the client proved the keys."""
        assert self._session is not None
        try:
            msg = parse_xdlms(apdu)
        except FrameError:
            return ExceptionResponse(1, 1).to_bytes()
        d = msg.descriptor if isinstance(msg, ActionRequest) else None
        if d is None or (d.class_id, str(d.obis), d.index) != (15, "0-0:40.0.0", 1):
            return ExceptionResponse(1, 1).to_bytes()
        assert isinstance(msg, ActionRequest)
        try:
            proof = axdr.decode(msg.data or b"")
            if not isinstance(proof, bytes):
                raise ProtocolError("f(StoC) is not an octet-string")
            self._session.check(proof, self._challenge)
        except (FrameError, ProtocolError):
            self._hls_pending, self.refusal = False, "HLS-GMAC authentication failure"
            return self._session.wrap(ActionResponse(msg.invoke_id, ActionResult.OTHER_REASON).to_bytes())
        self._hls_pending, self.associated = False, True
        answer = axdr.encode(self._session.prove(self._client_challenge))
        return self._session.wrap(ActionResponse(msg.invoke_id, ActionResult.SUCCESS, answer).to_bytes())

    def _refuse(self, diagnostic: AcseDiagnostic, why: str) -> bytes:
        self.associated = False
        self.refusal = why
        return Aare(AssociationResult.REJECTED_PERMANENT, diagnostic).to_bytes()

    @property
    def level(self) -> AccessLevel:
        return self.policy.access if self.policy is not None else AccessLevel.READ

    # -- services --------------------------------------------------------------------------------------------------
    def _on_get(self, msg: GetRequest) -> bytes:
        if msg.kind == 2:
            return self._next_block(msg)
        self._long_get = None
        results: list[tuple[bytes | None, int | None]] = []
        for desc, access in msg.items:
            got = self.model.get(desc, access, self.level)
            results.append((got, None) if isinstance(got, bytes) else (None, int(got)))
        response = GetResponse(msg.kind, msg.invoke_id, tuple(results))
        raw = response.to_bytes()
        if len(raw) <= self.client_max_pdu or msg.kind != 1:
            return raw
        data = results[0][0] or b""
        size = max(self.client_max_pdu - _BLOCK_OVERHEAD, 16)
        blocks = [data[i : i + size] for i in range(0, len(data), size)]
        self._long_get = (msg.invoke_id, blocks, 1)
        return GetResponse(2, msg.invoke_id, ((blocks[0], None),), last=len(blocks) == 1, block=1).to_bytes()

    def _next_block(self, msg: GetRequest) -> bytes:
        state = self._long_get
        if state is None:
            err = DataAccessResult.NO_LONG_GET_IN_PROGRESS
            return GetResponse(2, msg.invoke_id, ((None, err),), last=True, block=msg.block).to_bytes()
        iid, blocks, sent = state
        if msg.block != sent:  # the client repeats an earlier acknowledgement: resend what it asks for
            if not 1 <= msg.block <= len(blocks):
                self._long_get = None
                err = DataAccessResult.DATA_BLOCK_NUMBER_INVALID
                return GetResponse(2, msg.invoke_id, ((None, err),), last=True, block=msg.block).to_bytes()
            sent = msg.block
        nxt = sent + 1
        if nxt > len(blocks):
            self._long_get = None
            err = DataAccessResult.NO_LONG_GET_IN_PROGRESS
            return GetResponse(2, msg.invoke_id, ((None, err),), last=True, block=msg.block).to_bytes()
        self._long_get = (iid, blocks, nxt)
        last = nxt == len(blocks)
        if last:
            self._long_get = (iid, blocks, nxt)
        return GetResponse(2, iid, ((blocks[nxt - 1], None),), last=last, block=nxt).to_bytes()

    def _on_set(self, msg: SetRequest) -> bytes:
        if msg.kind == 1:
            assert msg.descriptor is not None
            return SetResponse(1, msg.invoke_id, self.model.set(msg.descriptor, msg.data, self.level)).to_bytes()
        if msg.kind == 2:
            assert msg.descriptor is not None
            self._long_set = (msg.descriptor, bytearray(msg.data), msg.block)
        elif self._long_set is None or msg.block != self._long_set[2] + 1:
            self._long_set = None
            return SetResponse(3, msg.invoke_id, DataAccessResult.NO_LONG_SET_IN_PROGRESS, msg.block).to_bytes()
        else:
            desc, buf, _ = self._long_set
            buf += msg.data
            if len(buf) > 1 << 20:
                self._long_set = None
                return SetResponse(3, msg.invoke_id, DataAccessResult.LONG_SET_ABORTED, msg.block).to_bytes()
            self._long_set = (desc, buf, msg.block)
        if not msg.last:
            return SetResponse(2, msg.invoke_id, block=msg.block).to_bytes()
        desc, buf, _ = self._long_set
        self._long_set = None
        return SetResponse(3, msg.invoke_id, self.model.set(desc, bytes(buf), self.level), msg.block).to_bytes()

    def _on_action(self, msg: ActionRequest) -> bytes:
        if self.level < AccessLevel.MANAGE:
            return ActionResponse(msg.invoke_id, ActionResult.READ_WRITE_DENIED).to_bytes()
        result, data = self.model.action(msg.descriptor, msg.data, self.level)
        return ActionResponse(msg.invoke_id, result, data).to_bytes()
