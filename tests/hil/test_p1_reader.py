"""``read_p1``: telegrams pushed by a meter over a pty and over a serial-to-TCP bridge, with a corrupted one between
good ones, and silence as a ReadTimeout naming the URI."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import tty

import pytest

from amiflow.errors import ReadTimeout
from amiflow.uri import parse_meter_uri
from protocols.p1 import build_telegram, dsmr5_telegram, read_p1

TS = 1_790_000_000


def _stream() -> tuple[list[bytes], bytes]:
    sent = [dsmr5_telegram(equipment_id="P1RDR", ts=TS + s, import_wh=(1000.0 * s, 5.0)) for s in range(4)]
    bad = bytearray(sent[1])
    bad[bad.index(b"1-0:1.8.1(") + 12] ^= 0x01  # one flipped bit inside the register value: the CRC catches it
    return sent, b"\x00\xff!noise" + sent[0] + bytes(bad) + sent[2] + sent[3]


async def _collect(uri: str, n: int) -> list[tuple[bytes, list[float], list[str]]]:
    out = []
    async for raw, batch, issues in read_p1(parse_meter_uri(uri), timeout_s=2.0, meter="M1"):
        out.append(
            (
                raw,
                [float(v) for v, o in zip(batch.value, batch.obis, strict=True) if o == "1-0:1.8.0"],
                [i.code for i in issues],
            )
        )
        if len(out) == n:
            break
    return out


def _check(got: list[tuple[bytes, list[float], list[str]]], sent: list[bytes]) -> None:
    assert [g[0] == s for g, s in zip(got, sent, strict=True)] == [True, False, True, True]
    assert [g[2] for g in got] == [[], ["bad_crc"], [], []]
    assert [g[1] for g in got] == [[5.0], [], [2005.0], [3005.0]]  # total = tariff 1 + tariff 2


async def test_read_p1_from_a_pty() -> None:
    master, slave = os.openpty()
    tty.setraw(master)
    sent, stream = _stream()
    try:
        reader = asyncio.create_task(_collect(f"p1://{os.ttyname(slave)}", 4))
        await asyncio.sleep(0.2)
        for i in range(0, len(stream), 61):
            os.write(master, stream[i : i + 61])
            await asyncio.sleep(0)
        _check(await asyncio.wait_for(reader, 10), sent)
    finally:
        os.close(master)
        os.close(slave)


async def test_read_p1_through_a_tcp_bridge_and_silence() -> None:
    sent, stream = _stream()

    async def bridge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(stream)
        await writer.drain()
        with contextlib.suppress(Exception):
            await reader.read()  # stay connected and silent until the client goes
        writer.close()

    server = await asyncio.start_server(bridge, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        _check(await _collect(f"p1+tcp://127.0.0.1:{port}", 4), sent)
        with pytest.raises(ReadTimeout, match=f"p1\\+tcp://127.0.0.1:{port}"):
            async for _ in read_p1(parse_meter_uri(f"p1+tcp://127.0.0.1:{port}"), timeout_s=0.3):
                pass  # the four telegrams, then silence
    finally:
        server.close()
        await server.wait_closed()


async def test_read_p1_stamps_clockless_dsmr22_telegrams_with_their_arrival() -> None:
    old = build_telegram(
        "ISk5\\2ME382-1004",
        ["0-0:96.1.1(4B414C37)", "1-0:1.8.1(00608.400*kWh)", "1-0:1.8.2(00490.342*kWh)", "1-0:1.7.0(0001.51*kW)"],
        crc=False,
    )

    async def bridge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"\x00" + old)
        await writer.drain()
        with contextlib.suppress(Exception):
            await reader.read()
        writer.close()

    server = await asyncio.start_server(bridge, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        before = int(time.time())
        async for raw, batch, issues in read_p1(parse_meter_uri(f"p1+tcp://127.0.0.1:{port}"), timeout_s=2.0):
            assert raw == old and set(batch.meter) == {"KAL7"}
            assert [i.code for i in issues] == ["receive_time"]
            assert before <= min(batch.ts) and max(batch.ts) <= int(time.time())
            assert dict(zip(batch.obis, batch.value, strict=True))["1-0:1.8.0"] == 1098742.0
            break
    finally:
        server.close()
        await server.wait_closed()
