"""Block transfer both ways between the client and server associations, without I/O: a long SET travels in
SET-Request-With-(First-)Datablock blocks and arrives whole; a long GET comes back in blocks; block errors are
answered with the right data-access-result."""

from __future__ import annotations

from amiflow.types import parse_obis
from protocols.dlms import axdr
from protocols.dlms.association import ClientAssociation, Continue, GetResult, SetOutcome
from protocols.dlms.server import AccessLevel, ClientPolicy, ServerAssociation
from protocols.dlms.xdlms import (
    AccessSelection,
    AttributeDescriptor,
    DataAccessResult,
    GetRequest,
    GetResponse,
    SetRequest,
    SetResponse,
    parse_xdlms,
)

NOTE = AttributeDescriptor(1, parse_obis("0-0:96.13.0"), 2)  # consumer message text: a long settable value


class Model:
    def __init__(self) -> None:
        self.value = axdr.encode(b"")

    def get(self, desc: AttributeDescriptor, access: AccessSelection | None, level: AccessLevel) -> bytes | int:
        return self.value if desc == NOTE else DataAccessResult.OBJECT_UNDEFINED

    def set(self, desc: AttributeDescriptor, data: bytes, level: AccessLevel) -> int:
        self.value = data
        return DataAccessResult.SUCCESS

    def action(self, desc: AttributeDescriptor, data: bytes | None, level: AccessLevel) -> tuple[int, bytes | None]:
        return 0, None


def _pair(max_pdu: int = 64) -> tuple[ClientAssociation, ServerAssociation, Model]:
    model = Model()
    server = ServerAssociation(model, ClientPolicy(access=AccessLevel.MANAGE), max_pdu=max_pdu)
    client = ClientAssociation()
    client.on_aare(server.handle(client.aarq()) or b"")
    return client, server, model


def test_long_set_and_get_in_blocks() -> None:
    client, server, model = _pair()
    text = bytes(range(256)) * 3
    request = client.set(NOTE, axdr.encode(text))
    kinds = []
    while True:
        kinds.append(parse_xdlms(request).kind)  # type: ignore[union-attr]
        outcome = client.on_response(server.handle(request) or b"")
        if not isinstance(outcome, Continue):
            break
        request = outcome.request
    assert outcome == SetOutcome(DataAccessResult.SUCCESS)
    assert kinds[0] == 2 and set(kinds[1:]) == {3} and len(kinds) > 10
    assert axdr.decode(model.value) == text
    request, blocks = client.get(NOTE), 0
    while True:
        got = client.on_response(server.handle(request) or b"")
        blocks += 1
        if not isinstance(got, Continue):
            break
        request = got.request
    assert isinstance(got, GetResult) and blocks > 10
    assert got.items[0][0] is not None and axdr.decode(got.items[0][0]) == text


def test_block_errors() -> None:
    client, server, _model = _pair()
    next_without_get = GetResponse.from_bytes(server.handle(GetRequest(2, 0xC1, block=1).to_bytes()) or b"")
    assert next_without_get.results[0] == (None, DataAccessResult.NO_LONG_GET_IN_PROGRESS)
    stray = SetResponse.from_bytes(server.handle(SetRequest(3, 0xC1, None, b"x", block=5).to_bytes()) or b"")
    assert (stray.kind, stray.result) == (3, DataAccessResult.NO_LONG_SET_IN_PROGRESS)
    server.handle(client.set(NOTE, axdr.encode(bytes(200))))  # a long GET/SET then a bad block number
    server.handle(SetRequest(1, 0xC1, NOTE, axdr.encode(bytes(300))).to_bytes())
    first = GetResponse.from_bytes(server.handle(GetRequest(1, 0xC2, ((NOTE, None),)).to_bytes()) or b"")
    assert first.kind == 2 and not first.last and first.block == 1
    again = GetResponse.from_bytes(server.handle(GetRequest(2, 0xC2, block=1).to_bytes()) or b"")
    assert again.block == 2
    repeat = GetResponse.from_bytes(server.handle(GetRequest(2, 0xC2, block=1).to_bytes()) or b"")
    assert repeat.block == 2 and repeat.results == again.results  # a lost block is sent again
    bad = GetResponse.from_bytes(server.handle(GetRequest(2, 0xC2, block=99).to_bytes()) or b"")
    assert bad.results[0] == (None, DataAccessResult.DATA_BLOCK_NUMBER_INVALID)
