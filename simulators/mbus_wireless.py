"""Simulated wireless M-Bus meters (EN 13757-4 T1 / C1, OMS): ``amiflow sim wmbus --listen URI [--devices SPEC]``.

Each meter sends SND_NR frames (C 44) with the short transport header (CI 7A) and the current records of the wired
simulator's layout for its kind (:class:`simulators.mbus_devices.SimSlave`: a Kamstrup-like heat meter, an
Itron-like water meter, ...), encrypted with OMS security mode 5 under its own key (:func:`sim_key`, from the seed
and the ident number) unless ``encrypt`` is off, in frame format A (T1) or B (C1). The access number counts up per
frame, so every frame's bytes differ, as on air.

A round (:meth:`WmbusSimulator.frames`: one frame of every meter at a time) goes out as hex lines (the stream
``amiflow ingest wmbus`` reads by default) or raw bytes (a transparent stick), to every TCP client (``--listen
tcp://127.0.0.1:PORT``, port 0 picks one), a pty (``--listen pty``), or standard output (the command's ``--listen
-``). Faults, each frame with probability ``fault_rate``: ``bad_crc`` (a byte flipped after its CRC was computed),
``foreign`` (a frame from a meter nobody registered), ``noise`` (a line or a run of bytes that is no frame). Hex
lines may carry the time of the round (``2026-11-01T00:15:00Z;<hex>``), as a receiver's log does.
:meth:`registry_csv` writes the meters (with their keys) in the CSV of ``amiflow meters import``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Final

from amiflow.errors import ConfigError
from protocols.mbus.encoder import MORE_RECORDS
from protocols.mbus.header import DeviceHeader
from protocols.mbus.wmbus import build_wmbus
from simulators.byte_server import ByteServer, pty_inbox, pty_write
from simulators.listen import parse_listen
from simulators.mbus_devices import KINDS, SimSlave, encrypt_records, sim_key

__all__ = ["WMBUS_FAULTS", "WmbusSimulator", "parse_wireless_devices"]

WMBUS_FAULTS: Final = ("bad_crc", "foreign", "noise")
DEFAULT_WIRELESS: Final = "water:51000001,heat:51000002"
_SND_NR: Final = 0x44


def parse_wireless_devices(spec: str | None, *, seed: int = 1, encrypt: bool = True) -> list[SimSlave]:
    """``KIND:IDENT,...`` (default ``water:51000001,heat:51000002``), KIND one of heat, water, gas, electricity."""
    meters = []
    for i, item in enumerate((spec or DEFAULT_WIRELESS).split(",")):
        parts = item.strip().split(":")
        if len(parts) != 2 or parts[0] not in KINDS or len(parts[1]) != 8 or not set(parts[1]) <= set("0123456789"):
            raise ConfigError(f"--devices {item!r}: expected KIND:IDENT (8 digits) with KIND one of {', '.join(KINDS)}")
        key = sim_key(seed, parts[1]) if encrypt else None
        meters.append(SimSlave(parts[0], 0, parts[1], seed=seed, meter_index=i, key=key))
    if len({m.ident for m in meters}) != len(meters):
        raise ConfigError(f"--devices {spec!r}: an ident number appears twice")
    return meters


class WmbusSimulator(ByteServer):
    """Wireless meters; ``await sim.start()`` (or ``async with``), then ``await sim.send(ts)`` sends a round."""

    def __init__(
        self,
        listen: str = "tcp://127.0.0.1:0",
        *,
        devices: str | Iterable[SimSlave] | None = None,
        seed: int = 1,
        encrypt: bool = True,
        fmt: str = "A",
        mode: str = "hex",
        faults: Iterable[str] = (),
        fault_rate: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kind, self.host, self.port = ("stdout", "", 0) if listen == "-" else parse_listen(listen)
        self.meters = (
            parse_wireless_devices(devices, seed=seed, encrypt=encrypt)
            if devices is None or isinstance(devices, str)
            else list(devices)
        )
        if fmt not in ("A", "B") or mode not in ("hex", "raw"):
            raise ConfigError(f"wM-Bus simulator: format {fmt!r} / mode {mode!r}: expected A or B / hex or raw")
        self.faults = tuple(sorted(set(faults)))
        if set(self.faults) - set(WMBUS_FAULTS) or not 0.0 <= fault_rate <= 1.0:
            known = ", ".join(WMBUS_FAULTS)
            raise ConfigError(f"wM-Bus faults {list(self.faults)} at rate {fault_rate}: known {known}, rate 0..1")
        self.fmt, self.mode, self.fault_rate, self.clock = fmt, mode, fault_rate, clock
        self.pty_path: str | None = None
        self.sent = 0
        self.faults_injected: dict[str, int] = {}
        self._rng = random.Random(seed * 104_729)
        self._foreign = SimSlave("water", 0, "99999999", seed=seed, key=sim_key(seed, "99999999") if encrypt else None)
        self._clients: set[Callable[[bytes], object]] = set()
        self._access: dict[str, int] = {}
        self._init_server()

    async def start(self) -> None:
        """Listen (TCP), open the pty, or (``-``) take standard output as the one client."""
        if self.kind != "stdout":
            await super().start()
            return

        def write(data: bytes) -> None:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()

        self._clients.add(write)

    @property
    def uri(self) -> str:
        """Where ``amiflow ingest wmbus --from`` reads: ``tcp://HOST:PORT`` or ``serial:///dev/pts/N``."""
        return f"serial://{self.pty_path}" if self.kind == "pty" else f"tcp://{self.host}:{self.port}"

    def frame(self, meter: SimSlave, ts: float) -> bytes:
        """One frame of ``meter`` at ``ts``: its current records, encrypted with its key when it has one."""
        access = self._access[meter.ident] = (self._access.get(meter.ident, 0) + 1) & 0xFF
        records = meter.telegrams(ts)[0]
        records = records[:-1] if records.endswith(MORE_RECORDS) else records  # one telegram on air
        header = DeviceHeader(meter.ident, meter.manufacturer, meter.version, meter.medium, access)
        if meter.key is not None:
            header, records = encrypt_records(meter.key, header, records)
        short = bytes((header.access, header.status)) + header.config.to_bytes(2, "little")
        return build_wmbus(_SND_NR, header.address, 0x7A, short + records, fmt=self.fmt)

    def frames(self, ts: float | None = None) -> list[bytes]:
        """A round: one frame of every meter at ``ts`` (default: the clock), faults applied."""
        now = self.clock() if ts is None else ts
        out = []
        for meter in self.meters:
            fault = self._pick_fault()
            frame = self.frame(self._foreign if fault == "foreign" else meter, now)
            if fault == "bad_crc":
                frame = frame[:12] + bytes((frame[12] ^ 0x10,)) + frame[13:]
            elif fault == "noise":
                out.append(bytes(self._rng.randrange(256) for _ in range(23)))
            out.append(frame)
        self.sent += len(out)
        return out

    def encode(self, frames: list[bytes], ts: float | None = None) -> bytes:
        """The bytes on the stream: one hex line per frame (``ISO-TIME;HEX`` with ``ts``, as a receiver logs them),
        or the frames back to back."""
        if self.mode == "raw":
            return b"".join(frames)
        stamp = "" if ts is None else datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ;")
        return b"".join(f"{stamp}{f.hex()}\n".encode() for f in frames)

    def _pick_fault(self) -> str | None:
        if self.faults and self._rng.random() < self.fault_rate:
            fault = self._rng.choice(self.faults)
            self.faults_injected[fault] = self.faults_injected.get(fault, 0) + 1
            return fault
        return None

    async def send(self, ts: float | None = None, *, stamp: bool = False) -> int:
        """Send a round to every connected client (``stamp``: hex lines with their time); returns how many got it."""
        now = self.clock() if ts is None else ts
        return await self.broadcast(self.encode(self.frames(now), now if stamp else None))

    async def broadcast(self, data: bytes) -> int:
        """Put ``data`` on the stream of every connected client (a round again: what a repeater does)."""
        clients = list(self._clients)
        for write in clients:
            result = write(data)
            if asyncio.iscoroutine(result):
                await result
        return len(clients)

    async def wait_for_clients(self, n: int = 1, timeout_s: float = 10.0) -> None:
        """Wait until ``n`` receivers are connected."""
        deadline = time.monotonic() + timeout_s
        while len(self._clients) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"wM-Bus simulator: {len(self._clients)} of {n} receivers connected")
            await asyncio.sleep(0.01)

    def registry_csv(self, *, timezone: str = "UTC", tariffs: dict[str, str] | None = None) -> str:
        """``amiflow meters import`` CSV of the meters, their ``wmbus://`` URIs and keys (meter ids ``W<ident>``)."""
        lines = ["meter,protocol,uri,timezone,tariff,account,key"]
        for m in self.meters:
            tariff = (tariffs or {}).get(m.kind, "")
            key = m.key.hex() if m.key is not None else ""
            lines.append(f"W{m.ident},wmbus,wmbus://{m.ident}?manufacturer={m.manufacturer},{timezone},{tariff},,{key}")
        return "\n".join(lines) + "\n"

    async def _on_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._adopt_current_task()

        async def write(data: bytes) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                writer.write(data)
                await writer.drain()

        self._clients.add(write)
        try:
            while await reader.read(4096):  # receivers send nothing; their EOF ends the session
                pass
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            self._clients.discard(write)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _serve_pty(self, master: int) -> None:
        inbox = pty_inbox(master)

        async def write(data: bytes) -> None:
            await pty_write(master, data)

        self._clients.add(write)
        try:
            while True:
                await inbox.get()
        finally:
            self._clients.discard(write)
