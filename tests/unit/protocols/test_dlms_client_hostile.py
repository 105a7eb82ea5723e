"""DlmsClient against meters that misbehave on purpose (null modem, scripted answers): every case ends in one of
amiflow's errors within a bounded time, never a hang, never a raw exception."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from amiflow.errors import AmiflowError, TransportError
from amiflow.uri import parse_meter_uri
from protocols.dlms import DlmsClient, axdr
from protocols.dlms.acse import Aare, InitiateResponse
from protocols.dlms.wrapper import WrapperFrame, WrapperFramer
from protocols.dlms.xdlms import GetResponse
from protocols.transport import MemoryLink, null_modem

URI = "dlms+tcp://127.0.0.1:4059"
AARE_OK = Aare(user_information=InitiateResponse(max_pdu=1024).to_bytes()).to_bytes()

# A scripted meter: request APDU -> list of raw byte chunks to send back.
Script = Callable[[bytes], list[bytes]]


def _wrap(apdu: bytes) -> bytes:
    return WrapperFrame(1, 16, apdu).to_bytes()


async def _serve(link: MemoryLink, script: Script) -> None:
    framer = WrapperFramer()
    async with link:
        while True:
            try:
                framer.receive_data(await link.read(4096, timeout_s=30))
            except TransportError:
                return
            while isinstance(frame := framer.next_event(), WrapperFrame):
                for chunk in script(frame.apdu):
                    await link.write(chunk)
                    await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def _hostile(script: Script) -> AsyncIterator[DlmsClient]:
    a, b = null_modem(timeout_s=0.2)
    a.peer = URI
    task = asyncio.create_task(_serve(b, script))
    try:
        yield DlmsClient(parse_meter_uri(URI), timeout_s=0.2, link=a)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _associate_then(answer: Callable[[bytes], list[bytes]]) -> Script:
    def script(apdu: bytes) -> list[bytes]:
        if apdu[:1] == b"\x60":
            return [_wrap(AARE_OK)]
        if apdu[:1] == b"\x62":
            return [_wrap(b"\x63\x03\x80\x01\x00")]
        return answer(apdu)

    return script


def _iid(apdu: bytes) -> int:
    return apdu[2]


CASES: dict[str, Script] = {
    "garbage instead of an AARE": lambda apdu: [b"\x00\x01\x00\x01\x00\x10\x00\x05garbage"],
    "AARE cut short then silence": lambda apdu: [_wrap(AARE_OK)[:12]],
    "an xDLMS answer instead of an AARE": lambda apdu: [_wrap(bytes.fromhex("C401C100090100"))],
    "a wrapper length of 65535 then silence": _associate_then(lambda apdu: [b"\x00\x01\x00\x01\x00\x10\xff\xff\xc4"]),
    "an answer that does not decode": _associate_then(
        lambda apdu: [_wrap(bytes((0xC4, 1, _iid(apdu), 0, 0x01, 0x05)))]
    ),
    "a datablock numbered wrong": _associate_then(
        lambda apdu: [_wrap(GetResponse(2, _iid(apdu), ((b"\x01", None),), last=False, block=7).to_bytes())]
    ),
    "an unknown APDU tag": _associate_then(lambda apdu: [_wrap(b"\x99\x01\x02")]),
    "stale answers only": _associate_then(
        lambda apdu: [_wrap(GetResponse(1, _iid(apdu) ^ 0x01, ((axdr.encode(None), None),)).to_bytes())] * 3
    ),
    "silence after the association": _associate_then(lambda apdu: []),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_misbehaving_meter_is_an_amiflow_error(case: str) -> None:
    async with _hostile(CASES[case]) as client:

        async def session() -> None:
            async with client:
                await client.read_clock()

        with pytest.raises(AmiflowError) as info:
            await asyncio.wait_for(session(), 5)  # the bound of this test, not of the client: it must end sooner
    assert URI in str(info.value), str(info.value)


async def test_endless_datablocks_are_bounded() -> None:
    """A meter that never sends the last block: the client gives up at its size bound, it does not loop forever."""
    chunk = b"\x00" * 60_000

    def answer(apdu: bytes) -> list[bytes]:
        block = 1 if apdu[1] == 1 else int.from_bytes(apdu[3:7], "big") + 1
        return [_wrap(GetResponse(2, _iid(apdu), ((chunk, None),), last=False, block=block).to_bytes())]

    async with _hostile(_associate_then(answer)) as client:

        async def session() -> None:
            async with client:
                await client.read_clock()

        with pytest.raises(AmiflowError, match=r"bound|too large|exceeds") as info:
            await asyncio.wait_for(session(), 60)
    assert URI in str(info.value)
