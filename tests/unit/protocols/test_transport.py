"""Links (TCP on loopback, a pty, the in-memory null modem), the bus lock, the circuit breaker and retry."""

from __future__ import annotations

import asyncio
import os
import random
import re
import tty

import pytest

from amiflow.errors import ConfigError, ConnectError, ReadTimeout, TransportError
from amiflow.uri import parse_meter_uri
from protocols.transport import (
    BreakerState,
    BusLock,
    CircuitBreaker,
    CircuitOpen,
    SerialLink,
    TcpLink,
    backoff_delays,
    bus_key,
    null_modem,
    open_link,
    retry,
    serial_settings,
)


async def _echo_server() -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read(100)
        if data == b"close":
            writer.close()
            return
        writer.write(data.upper())
        await writer.drain()
        await reader.read(100)  # hold the connection until the client goes
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_tcp_link_roundtrip_timeout_and_eof() -> None:
    server, port = await _echo_server()
    async with server:
        link = open_link(parse_meter_uri(f"iec62056-21+tcp://127.0.0.1:{port}"), timeout_s=1.0)
        assert isinstance(link, TcpLink) and not link.is_open
        async with link:
            await link.write(b"abc")
            assert await link.read() == b"ABC"
            with pytest.raises(ReadTimeout, match=str(port)):
                await link.read(timeout_s=0.05)
            await link.set_serial(9600, 7, "E", 1)  # no-op on TCP
        assert not link.is_open
        async with open_link(parse_meter_uri(f"p1+tcp://127.0.0.1:{port}"), timeout_s=1.0) as link2:
            await link2.write(b"close")
            with pytest.raises(TransportError, match="closed"):
                await link2.read()


async def test_connect_refused_names_the_uri() -> None:
    server, port = await _echo_server()
    server.close()
    await server.wait_closed()
    text = f"modbus+tcp://127.0.0.1:{port}"
    with pytest.raises(ConnectError, match=re.escape(text)):
        async with open_link(parse_meter_uri(text), timeout_s=1.0):
            pass


async def test_serial_link_over_pty_and_baud_switch() -> None:
    master, slave = os.openpty()
    tty.setraw(master)
    try:
        uri = parse_meter_uri(f"iec62056-21://{os.ttyname(slave)}")
        link = open_link(uri, timeout_s=1.0)
        assert isinstance(link, SerialLink) and link.settings == (300, 7, "E", 1)
        async with link:
            await link.write(b"/?!\r\n")
            await asyncio.sleep(0.05)
            assert os.read(master, 100) == b"/?!\r\n"
            os.write(master, b"/ABC5\r\n")
            got = b""
            while len(got) < 7:
                got += await link.read()
            assert got == b"/ABC5\r\n"
            await link.set_serial(9600, 7, "E", 1)
            assert link.settings == (9600, 7, "E", 1)
            with pytest.raises(ReadTimeout):
                await link.read(timeout_s=0.05)
    finally:
        os.close(master)
        os.close(slave)


async def test_serial_open_failure_is_connect_error() -> None:
    with pytest.raises(ConnectError, match="/dev/does-not-exist"):
        async with open_link(parse_meter_uri("modbus+rtu:///dev/does-not-exist"), timeout_s=0.5):
            pass


def test_serial_settings_from_uri_and_bad_values() -> None:
    assert serial_settings(parse_meter_uri("modbus+rtu:///dev/x?baud=19200&parity=e")) == (19200, 8, "E", 1.0)
    assert serial_settings(parse_meter_uri("p1:///dev/x")) == (115200, 8, "N", 1)
    with pytest.raises(ConfigError):
        serial_settings(parse_meter_uri("modbus+rtu:///dev/x?parity=Q"))
    with pytest.raises(ConfigError):
        open_link(parse_meter_uri("mqtt://M1"), timeout_s=1)


async def test_null_modem() -> None:
    a, b = null_modem(timeout_s=0.1)
    async with a, b:
        await a.write(b"hello")
        assert await b.read(2) == b"he"
        assert await b.read() == b"llo"
        with pytest.raises(ReadTimeout):
            await b.read()
    with pytest.raises(TransportError):
        await a.read()


async def test_bus_lock_serializes_per_bus() -> None:
    bus = BusLock()
    u1 = parse_meter_uri("modbus+tcp://127.0.0.1:5020?unit=1")
    u2 = parse_meter_uri("modbus+tcp://127.0.0.1:5020?unit=2")
    u3 = parse_meter_uri("modbus+tcp://127.0.0.1:5021?unit=1")
    assert bus_key(u1) == bus_key(u2) != bus_key(u3)
    active: list[str] = []
    overlap: list[tuple[str, ...]] = []

    async def request(uri: object, name: str) -> None:
        async with bus.hold(uri):  # type: ignore[arg-type]
            active.append(name)
            overlap.append(tuple(active))
            await asyncio.sleep(0.01)
            active.remove(name)

    await asyncio.gather(request(u1, "a"), request(u2, "b"), request(u3, "c"))
    # a and b share a gateway: never both active; c is on another one and may overlap either
    assert not any({"a", "b"} <= set(o) for o in overlap)
    assert any(len(o) == 2 for o in overlap)


def _state(breaker: CircuitBreaker) -> BreakerState:
    return breaker.state  # read through a call: mypy would narrow the property across the clock changes


async def test_circuit_breaker_states() -> None:
    now = [0.0]
    breaker = CircuitBreaker("M1", failure_threshold=2, cooldown_s=10, clock=lambda: now[0])
    calls = 0

    async def fail() -> None:
        nonlocal calls
        calls += 1
        raise ReadTimeout("M1: no answer")

    async def ok() -> int:
        return 7

    for _ in range(2):
        with pytest.raises(ReadTimeout):
            await breaker.call(fail)
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen, match="M1"):
        await breaker.call(fail)
    assert calls == 2
    now[0] = 10.0
    assert _state(breaker) is BreakerState.HALF_OPEN
    with pytest.raises(ReadTimeout):
        await breaker.call(fail)  # the trial fails: open again for a full cooldown
    assert breaker.state is BreakerState.OPEN
    now[0] = 20.0
    assert await breaker.call(ok) == 7
    assert _state(breaker) is BreakerState.CLOSED and breaker.failures == 0


async def test_half_open_allows_one_trial_only() -> None:
    now = [0.0]
    breaker = CircuitBreaker("M2", failure_threshold=1, cooldown_s=1, clock=lambda: now[0])
    breaker.record_failure()
    now[0] = 1.0
    assert breaker.allow() and not breaker.allow()


async def test_retry_backoff() -> None:
    sleeps: list[float] = []

    async def fake_sleep(s: float) -> None:
        sleeps.append(s)

    tries = 0

    async def flaky() -> str:
        nonlocal tries
        tries += 1
        if tries < 3:
            raise ConnectError("x: refused")
        return "ok"

    assert await retry(flaky, 5, 1.0, 3.0, rng=random.Random(1), sleep=fake_sleep) == "ok"
    assert tries == 3 and len(sleeps) == 2 and 0 <= sleeps[0] <= 1.0 and 0 <= sleeps[1] <= 2.0
    tries = -10
    with pytest.raises(ConnectError):
        await retry(flaky, 3, 1.0, 3.0, sleep=fake_sleep)
    assert tries == -7

    async def bad() -> None:
        raise ValueError("not retried")

    with pytest.raises(ValueError):
        await retry(bad, 3, sleep=fake_sleep)
    delays = backoff_delays(10, 0.5, 4.0, random.Random(3))
    assert len(delays) == 9 and max(delays) <= 4.0 and all(d >= 0 for d in delays)
