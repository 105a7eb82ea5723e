"""A simulated SML push meter on loopback TCP or a pty: an optical head's view of a German/Austrian meter.

``SmlSimulator("tcp://127.0.0.1:0")`` (port 0 picks one) pushes to every TCP connection, as a serial-to-TCP
bridge (ser2net) in front of an IR head does; ``SmlSimulator("pty")`` opens a pseudo-terminal and pushes into it
whether or not anyone reads (a meter does not wait: what the line buffer cannot take is lost). Each push is one
SML file from :class:`~simulators.sml_profiles.SmlMeter` (profile ``ehz``, ``itron`` or ``easymeter``, values from
the load model, faults ``bit_error``/``truncate``/``garbage``), every ``interval_s`` seconds (a random pause in
that range, 1-4 s as real meters do). ``clock`` (epoch seconds) is the meter's clock for the values.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterable

from amiflow.errors import ConfigError
from simulators.byte_server import ByteServer
from simulators.listen import parse_listen
from simulators.sml_profiles import FAULTS, PROFILES, SmlMeter

__all__ = ["FAULTS", "PROFILES", "SmlSimulator"]


class SmlSimulator(ByteServer):
    """One push meter; ``await sim.start()`` (or ``async with``), then ``sim.uri``; ``sim.meter`` holds the model."""

    def __init__(
        self,
        listen: str = "tcp://127.0.0.1:0",
        *,
        profile: str = "ehz",
        seed: int = 1,
        meter_index: int = 0,
        interval_s: tuple[float, float] = (1.0, 4.0),
        faults: Iterable[str] = (),
        fault_rate: float = 0.2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kind, self.host, self.port = parse_listen(listen, tcp_schemes=("sml+tcp",))
        low, high = interval_s
        if not 0.0 < low <= high:
            raise ConfigError(f"push interval {interval_s}: expected 0 < low <= high seconds")
        self.meter = SmlMeter(profile, seed=seed, meter_index=meter_index, faults=faults, fault_rate=fault_rate)
        self.interval_s = (float(low), float(high))
        self.clock = clock
        self.pty_path: str | None = None
        self.bytes_sent = 0
        self.bytes_dropped = 0
        self._pause = random.Random(seed * 7_919 + meter_index)
        self._init_server()

    @property
    def uri(self) -> str:
        """The meter URI a reader uses: ``sml+tcp://HOST:PORT`` or ``sml+serial:///dev/pts/N``."""
        if self.kind == "pty":
            return f"sml+serial://{self.pty_path}"
        return f"sml+tcp://{self.host}:{self.port}"

    async def _push_loop(self, send: Callable[[bytes], Awaitable[None]]) -> None:
        while True:
            await send(self.meter.push(int(self.clock())))
            await asyncio.sleep(self._pause.uniform(*self.interval_s))

    async def _on_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._adopt_current_task()

        async def send(data: bytes) -> None:
            writer.write(data)
            await writer.drain()
            self.bytes_sent += len(data)

        try:
            await self._push_loop(send)
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass  # the reader went away, or stop()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _serve_pty(self, master: int) -> None:
        async def send(data: bytes) -> None:
            view = memoryview(data)
            while view:
                try:
                    view = view[os.write(master, view) :]
                except BlockingIOError:  # nobody reads and the line buffer is full: the rest is lost
                    self.bytes_dropped += len(view)
                    return
            self.bytes_sent += len(data)

        await self._push_loop(send)
