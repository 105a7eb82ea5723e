"""An optical-port meter answering IEC 62056-21 mode C readouts: ``amiflow sim iec62056-21 --listen URI``.

``--listen tcp://127.0.0.1:PORT`` (port 0 picks one; the URI is printed) serves each TCP connection as one optical
head; ``--listen pty`` opens a pseudo-terminal and prints its slave path (``iec62056-21:///dev/pts/N``). Several
readouts may follow each other on one connection or pty; the meter forgets a half-finished exchange after 1.5 s of
silence, as real meters do.

Values come from the same load model as the MQTT fleet: ``LoadModel(seed).register_wh(meter_index, ts)`` for the
import register ``1-0:1.8.0`` (and the export register, instantaneous power, voltage and current derived from it), at
the simulated clock: ``clock`` (epoch seconds, settable: ``sim.clock = lambda: ts``) plus ``drift_s``. Of the
installation faults of :mod:`simulators.wiring` a readout shows ``voltage`` (the phase voltage line).

Faults (``--fault NAME`` repeatable, each session picks one with probability ``--fault-rate``):
``timeout`` (no answer to the sign-on), ``bad_bcc`` (a corrupted BCC), ``truncate`` (half the readout, then the
TCP connection closes / the pty goes silent), ``garbage`` (noise instead of an identification), ``noise`` (noise
before each answer: a client must resync and succeed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np

from amiflow.errors import ConfigError
from protocols.iec62056_21 import (
    Break,
    IecMeter,
    OptionSelect,
    SignOn,
    build_identification,
    build_readout,
)
from simulators.byte_server import ByteServer, pty_inbox, pty_write
from simulators.listen import parse_listen as _parse_listen
from simulators.load import LoadModel
from simulators.wiring import Wiring, parse_wiring

__all__ = ["FAULTS", "IecSimulator", "parse_listen"]

log = logging.getLogger(__name__)
FAULTS: Final = ("bad_bcc", "garbage", "noise", "timeout", "truncate")
_SILENCE_S: Final = 1.5


def parse_listen(text: str) -> tuple[str, str, int]:
    """The simulator's ``--listen`` (see :func:`simulators.listen.parse_listen`)."""
    return _parse_listen(text, tcp_schemes=("iec62056-21+tcp",))


Recv = Callable[[float | None], Awaitable[bytes]]
Send = Callable[[bytes], Awaitable[None]]


class IecSimulator(ByteServer):
    """One simulated meter; ``await sim.start()``, then ``sim.uri`` (and ``sim.port`` or ``sim.pty_path``)."""

    def __init__(
        self,
        listen: str = "tcp://127.0.0.1:0",
        *,
        seed: int = 1,
        meter_index: int = 0,
        serial: str | None = None,
        manufacturer: str = "AMF",
        model: str = "SIM-IEC1",
        baud_char: str = "5",
        address: str = "",
        faults: Iterable[str] = (),
        fault_rate: float = 1.0,
        tz: str = "UTC",
        clock: Callable[[], float] = time.time,
        drift_s: float = 0.0,
        wiring: Wiring | str | None = None,
    ) -> None:
        self.kind, self.host, self.port = parse_listen(listen)
        self.faults = tuple(sorted(set(faults)))
        unknown = set(self.faults) - set(FAULTS)
        if unknown:
            raise ConfigError(f"unknown IEC 62056-21 fault(s) {sorted(unknown)}; known: {', '.join(FAULTS)}")
        if not 0.0 <= fault_rate <= 1.0:
            raise ConfigError(f"fault rate {fault_rate}: must be between 0 and 1")
        self.model = LoadModel(seed)
        self.meter_index = meter_index
        self.serial = serial or f"{71000000 + meter_index:08d}"
        self.manufacturer = manufacturer
        self.model_name = model
        self.baud_char = baud_char
        self.address = address
        self.fault_rate = fault_rate
        self.tz = ZoneInfo(tz)
        self.clock = clock
        self.drift_s = drift_s
        self.wiring = parse_wiring(wiring)
        self.pty_path: str | None = None
        self.sessions = 0
        self.readouts = 0
        self.faults_injected: dict[str, int] = {}
        self._rng = random.Random(seed * 1_000_003 + meter_index)
        self._init_server()

    # -- the meter ---------------------------------------------------------------------------------------------

    def now(self) -> float:
        """The meter's clock (epoch seconds): the simulated clock plus the drift."""
        return self.clock() + self.drift_s

    def set_clock(self, ts: float) -> None:
        """Set the meter clock to ``ts`` now (changes ``drift_s``)."""
        self.drift_s = ts - self.clock()

    @property
    def uri(self) -> str:
        if self.kind == "pty":
            return f"iec62056-21://{self.pty_path}"
        return f"iec62056-21+tcp://{self.host}:{self.port}"

    def identification(self) -> bytes:
        return build_identification(self.manufacturer, self.baud_char, "\\2" + self.model_name)

    def readout_lines(self, ts: float) -> list[str]:
        """The data lines the meter shows at ``ts`` (its own clock, before drift)."""
        t = int(ts)
        reg = self._register(t)
        export = float(np.asarray(self.model.export_register_wh(self.meter_index, t)).reshape(-1)[0])
        power_w = max(0.0, (reg - self._register(t - 900)) * 4.0)
        volts = self.wiring.voltage or 230.0 + 4.0 * math.sin(t / 3600.0 + self.meter_index)
        month_start = datetime.fromtimestamp(t, UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        local = datetime.fromtimestamp(t, UTC).astimezone(self.tz)
        return [
            f"0-0:C.1.0({self.serial})",
            f"0-0:96.1.0({self.serial})",
            "0-0:F.F(00000000)",
            f"0-0:0.9.1({local:%H:%M:%S})",
            f"0-0:0.9.2({local:%y-%m-%d})",
            f"1-0:1.8.0({reg / 1000:010.3f}*kWh)",
            f"1-0:2.8.0({export / 1000:010.3f}*kWh)",
            f"1-0:1.8.0*01({self._register(int(month_start.timestamp())) / 1000:010.3f}*kWh)",
            f"1-0:1.7.0({power_w / 1000:07.3f}*kW)",
            f"1-0:32.7.0({volts:05.1f}*V)",
            f"1-0:31.7.0({power_w / volts:06.2f}*A)",
        ]

    def _register(self, t: int) -> float:
        return float(np.asarray(self.model.register_wh(self.meter_index, t)).reshape(-1)[0])

    def _pick_fault(self) -> str | None:
        if self.faults and self._rng.random() < self.fault_rate:
            fault = self._rng.choice(self.faults)
            self.faults_injected[fault] = self.faults_injected.get(fault, 0) + 1
            return fault
        return None

    def _noise(self, n: int) -> bytes:
        return bytes(self._rng.choice(b"abcxyz0123456789 #~\x7f\x00") for _ in range(n))  # never '/' or STX

    async def _session(self, recv: Recv, send: Send) -> None:
        """Answer sign-ons until the peer goes away (EOF); a half-done exchange resets after 1.5 s of silence."""
        proto = IecMeter()
        fault: str | None = None
        busy = False
        while True:
            try:
                chunk = await recv(_SILENCE_S if busy else None)
            except TimeoutError:
                proto.reset()
                busy, fault = False, None
                continue
            if not chunk:
                return
            proto.receive_data(chunk)
            while (event := proto.next_event()) is not None:
                if isinstance(event, SignOn):
                    if event.address and event.address != self.address:
                        continue  # another meter on the bus
                    self.sessions += 1
                    fault = self._pick_fault()
                    busy = fault != "timeout"
                    if fault == "timeout":
                        continue
                    if fault == "garbage":
                        await send(self._noise(40) + b"\r\n")
                        busy = False
                        continue
                    await send((self._noise(12) if fault == "noise" else b"") + self.identification())
                elif isinstance(event, OptionSelect) and busy:
                    busy = False
                    block = build_readout(self.readout_lines(self.now()))
                    if fault == "bad_bcc":
                        block = block[:-1] + bytes([block[-1] ^ 0x5A])
                    if fault == "noise":
                        block = self._noise(12) + block
                    if fault == "truncate":
                        await send(block[: len(block) // 2])
                        raise _Hangup
                    self.readouts += 1
                    await send(block)
                elif isinstance(event, Break):
                    busy, fault = False, None

    # -- serving -------------------------------------------------------------------------------------------------

    async def _on_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._adopt_current_task()

        async def recv(timeout: float | None) -> bytes:
            return await asyncio.wait_for(reader.read(4096), timeout)

        async def send(data: bytes) -> None:
            writer.write(data)
            await writer.drain()

        try:
            await self._session(recv, send)
        except (_Hangup, ConnectionError, OSError):
            pass
        except asyncio.CancelledError:  # stop(): the connection is closed below; nothing to report
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _serve_pty(self, master: int) -> None:
        inbox = pty_inbox(master)

        async def recv(timeout: float | None) -> bytes:
            return await asyncio.wait_for(inbox.get(), timeout)

        async def send(data: bytes) -> None:
            await pty_write(master, data)

        while True:
            try:
                await self._session(recv, send)
            except _Hangup:  # truncated: stay silent, then forget the exchange
                await asyncio.sleep(_SILENCE_S)
                while not inbox.empty():
                    inbox.get_nowait()


class _Hangup(Exception):
    """The simulated meter stops talking mid-readout (the truncate fault)."""
