"""One side of a ciphered association (HLS-GMAC, security suite 0): who we are, the keys, and both counters.

:class:`Ciphering` is the configuration a client or server is given: its system title, the keys, a
:class:`~protocols.dlms.counters.CounterStore` for its own invocation counter (persisted: a counter must never be
reused) and the store key naming this (meter, client) pair. :class:`CipherSession` is the state of one association:
it ciphers what we send with the next counter and deciphers what the peer sends, refusing a peer counter that is not
above the last accepted one (replay). Pure: no I/O besides the counter store the caller provides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from amiflow.errors import ProtocolError

from .counters import CounterStore
from .security import SecurityKeys, cipher_apdu, decipher_apdu, hls_gmac_response, verify_hls_gmac_response

__all__ = ["CIPHERED_TAGS", "CipherSession", "Ciphering"]

CIPHERED_TAGS: Final = frozenset((0x21, 0x28, 0xC8, 0xC9, 0xCB, 0xCC, 0xCD, 0xCF))


@dataclass(frozen=True, slots=True)
class Ciphering:
    """Our system title (8 bytes), the suite-0 keys, and where our invocation counter lives."""

    system_title: bytes
    keys: SecurityKeys
    counters: CounterStore
    counter_key: str | None = None

    def __post_init__(self) -> None:
        if len(self.system_title) != 8:
            raise ValueError(f"a system title has 8 bytes, got {len(self.system_title)}")

    def __repr__(self) -> str:
        return f"Ciphering(system_title={self.system_title.hex()}, keys=<hidden>)"


class CipherSession:
    """Ciphering state of one association; ``peer_title`` is set once the peer has named itself."""

    def __init__(self, ciphering: Ciphering, counter_key: str, *, peer_last_counter: int | None = None) -> None:
        self.ciphering = ciphering
        self.counter_key = counter_key
        self.peer_title: bytes | None = None
        self.peer_last_counter = peer_last_counter

    def _next(self) -> int:
        return self.ciphering.counters.next(self.counter_key)

    def wrap(self, apdu: bytes) -> bytes:
        """``apdu`` glo-ciphered (authenticated and encrypted) under the next invocation counter."""
        c = self.ciphering
        return cipher_apdu(apdu, system_title=c.system_title, invocation_counter=self._next(), keys=c.keys)

    def unwrap(self, data: bytes) -> bytes:
        """The plain APDU of the peer's ciphered ``data``; ProtocolError for a plain service APDU (not allowed in a
        ciphered association), a tag that does not verify, or a replayed counter."""
        if not data or data[0] not in CIPHERED_TAGS:
            if data[:1] == b"\xd8":  # an exception-response may come in clear
                return data
            raise ProtocolError(f"unciphered APDU 0x{data[:1].hex()} in a ciphered association")
        if self.peer_title is None:
            raise ProtocolError("ciphered APDU before the peer named its system title")
        out = decipher_apdu(
            data,
            system_title=self.peer_title,
            keys=self.ciphering.keys,
            last_invocation_counter=self.peer_last_counter,
        )
        self.peer_last_counter = out.invocation_counter
        return out.apdu

    def prove(self, challenge: bytes) -> bytes:
        """Our f(challenge) for the peer's challenge (HLS pass 3 for a client, pass 4 for a server)."""
        c = self.ciphering
        return hls_gmac_response(challenge, system_title=c.system_title, invocation_counter=self._next(), keys=c.keys)

    def check(self, response: bytes, challenge: bytes) -> None:
        """The peer's f(challenge) for our challenge; ProtocolError when it does not verify.

        No replay check on its counter: our challenge is fresh for this association, and the peer may have ciphered
        the APDU carrying f() under a later counter than f() itself."""
        if self.peer_title is None:
            raise ProtocolError("HLS-GMAC: the peer named no system title")
        verify_hls_gmac_response(response, challenge, system_title=self.peer_title, keys=self.ciphering.keys)
