"""A simulated M-Bus segment (EN 13757-2/-3): ``amiflow sim mbus --listen URI [--devices SPEC]``.

``--listen tcp://127.0.0.1:PORT`` (port 0 picks one) serves each TCP connection as the port of an M-Bus level
converter / TCP gateway in front of the bus; ``--listen pty`` opens a pseudo-terminal (``mbus+serial:///dev/pts/N``).
The bus holds the slaves of :mod:`simulators.mbus_devices` (``--devices heat:1,water:2,gas:3,electricity:4``, each
``KIND:ADDRESS[:IDENT]``) and answers primary addressing, secondary addressing (selection with wildcards) and
multi-telegram readouts with FCB. Every slave that a request concerns answers at once, as on the wire: M-Bus
slaves signal a 0 bit by drawing current, so overlapping answers combine as the bitwise AND of their bytes (two
E5s are one E5; two telegrams are garbage with a bad checksum, which is how a master sees a collision).

Faults (``faults``: names, each answer gets one with probability ``fault_rate``): ``timeout`` (no answer),
``bad_checksum`` (the last-but-one byte flipped), ``noise`` (line noise before the answer), ``truncate`` (half the
answer). ``clock`` (epoch seconds) is the meters' clock. ``encrypt``: the slaves send OMS security mode 5 with their
keys (:func:`simulators.mbus_devices.sim_key`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

from amiflow.errors import ConfigError, ReadTimeout, TransportError
from protocols.mbus.link import FrameFault, LongFrame, MbusStreamDecoder, ShortFrame
from protocols.transport import Link
from simulators.byte_server import ByteServer, pty_inbox, pty_write
from simulators.listen import parse_listen
from simulators.mbus_devices import SimSlave, parse_devices

__all__ = ["FAULTS", "MbusBusSimulator", "collide"]

FAULTS: Final = ("bad_checksum", "noise", "timeout", "truncate")


def collide(answers: list[bytes]) -> bytes:
    """What the master receives when several slaves answer at once: the bitwise AND (idle line = 0xFF)."""
    if len(answers) == 1:
        return answers[0]
    size = max(len(a) for a in answers)
    out = bytearray(b"\xff" * size)
    for answer in answers:
        for i, byte in enumerate(answer):
            out[i] &= byte
    return bytes(out)


class MbusBusSimulator(ByteServer):
    """A bus of slaves; ``await sim.start()`` (or ``async with``), then ``sim.uri``; ``sim.slaves`` the meters."""

    def __init__(
        self,
        listen: str = "tcp://127.0.0.1:0",
        *,
        devices: str | Iterable[SimSlave] | None = None,
        seed: int = 1,
        faults: Iterable[str] = (),
        fault_rate: float = 0.2,
        clock: Callable[[], float] = time.time,
        encrypt: bool = False,
    ) -> None:
        self.kind, self.host, self.port = parse_listen(listen, tcp_schemes=("mbus+tcp",))
        self.slaves = (
            parse_devices(devices, seed=seed, encrypt=encrypt)
            if devices is None or isinstance(devices, str)
            else list(devices)
        )
        self.faults = tuple(sorted(set(faults)))
        unknown = set(self.faults) - set(FAULTS)
        if unknown:
            raise ConfigError(f"unknown M-Bus fault(s) {sorted(unknown)}; known: {', '.join(FAULTS)}")
        if not 0.0 <= fault_rate <= 1.0:
            raise ConfigError(f"fault rate {fault_rate}: must be between 0 and 1")
        self.fault_rate = fault_rate
        self.clock = clock
        self.pty_path: str | None = None
        self.requests = 0
        self.faults_injected: dict[str, int] = {}
        self._rng = random.Random(seed * 7_907)
        self._init_server()

    @property
    def uri(self) -> str:
        """``mbus+tcp://HOST:PORT`` or ``mbus+serial:///dev/pts/N`` (add ``?address=N`` or ``?secondary=ID``)."""
        if self.kind == "pty":
            return f"mbus+serial://{self.pty_path}"
        return f"mbus+tcp://{self.host}:{self.port}"

    def respond(self, frame: ShortFrame | LongFrame) -> bytes | None:
        """The bytes on the bus after ``frame``: every concerned slave's answer combined, faults applied."""
        self.requests += 1
        now = self.clock()
        answers = [a for slave in self.slaves if (a := slave.answer(frame, now)) is not None]
        if not answers:
            return None
        data = collide(answers)
        fault = self._pick_fault()
        if fault == "timeout":
            return None
        if fault == "bad_checksum" and len(data) > 2:
            data = data[:-2] + bytes((data[-2] ^ 0x5A,)) + data[-1:]
        elif fault == "truncate" and len(data) > 2:
            data = data[: len(data) // 2]
        elif fault == "noise":
            data = bytes(self._rng.choice(b"\x00\x01\x7f\xaa\xfe\x23") for _ in range(7)) + data
        return data

    def _pick_fault(self) -> str | None:
        if self.faults and self._rng.random() < self.fault_rate:
            fault = self._rng.choice(self.faults)
            self.faults_injected[fault] = self.faults_injected.get(fault, 0) + 1
            return fault
        return None

    async def _serve(self, recv: Callable[[], Awaitable[bytes]], send: Callable[[bytes], Awaitable[None]]) -> None:
        decoder = MbusStreamDecoder()
        while True:
            chunk = await recv()
            if not chunk:
                return
            decoder.receive_data(chunk)
            while (event := decoder.next_event()) is not None:
                if isinstance(event, ShortFrame | LongFrame):
                    answer = self.respond(event)
                    if answer:
                        await send(answer)
                elif isinstance(event, FrameFault):
                    continue  # a slave ignores a frame it cannot read; the master times out and retries

    async def serve_link(self, link: Link) -> None:
        """Serve the bus on an open link (an in-memory link in tests, a serial device) until the peer closes it."""

        async def recv() -> bytes:
            while True:
                try:
                    return await link.read(4096, timeout_s=3600.0)
                except ReadTimeout:
                    continue
                except TransportError:
                    return b""

        await self._serve(recv, link.write)

    async def _on_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._adopt_current_task()

        async def send(data: bytes) -> None:
            writer.write(data)
            await writer.drain()

        try:
            await self._serve(lambda: reader.read(4096), send)
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _serve_pty(self, master: int) -> None:
        inbox = pty_inbox(master)

        async def send(data: bytes) -> None:
            await pty_write(master, data)

        await self._serve(inbox.get, send)
