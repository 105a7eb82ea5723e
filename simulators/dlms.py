"""``amiflow sim dlms``: a simulated DLMS/COSEM meter over the TCP wrapper or HDLC, on TCP or a pty.

``--listen tcp://127.0.0.1:PORT`` (0 = pick one and print it) or ``--listen pty`` (print the slave path); ``--hdlc``
frames with HDLC instead of the wrapper (always HDLC on a pty). The meter (server logical device 1) exposes:

==============  =====  =====================================================================================
0-0:1.0.0       8      clock (settable by the management client; ``clock_drift`` offsets it)
0-0:96.1.0      1      serial number; 0-0:96.1.1 model; 1-0:0.2.0 firmware; 0-0:42.0.0 logical device name
1-0:1.8.0/2.8.0 3      import / export energy registers, Wh (scaler 0)
1-0:1.7.0       3      active power W (the current interval's mean); 1-0:32.7.0 voltage (0.1 V) and 1-0:31.7.0
                       current (0.01 A) of L1, with ``--phases 3`` also L2/L3 (52/51, 72/71) sharing the load;
                       per phase active power import/export (21/22, 41/42, 61/62 .7.0), power factor (33/53/73,
                       0.001), current angle (81.7.40/51/62, 0.1 deg); 3 phases: voltage angles 81.7.10/81.7.20
1-0:13.7.0      3      power factor (0.001); 1-0:14.7.0 frequency (0.01 Hz)
1-0:0.4.2/0.4.5 1      CT ratio numerator/denominator (and 0.4.3/0.4.6 VT), only when ``wiring`` sets them
1-0:1.29.0      3      import energy of the last interval, Wh; 1-0:2.29.0 export
1-0:99.1.0      7      15-minute load profile: clock + 1-0:1.29.0 + 1-0:2.29.0 (``--profile registers``: clock +
                       1-0:1.8.0 + 1-0:2.8.0), range and entry selective access, long answers in GET blocks
0-0:99.98.0     7      event log: clock + event code 0-0:96.11.0 (2 power up, 5 clock set, 70 remote disconnect,
                       71 remote reconnect or arm, 72 manual reconnect)
0-0:96.3.10     70     disconnect control: output_state, control_state, control_mode (``--control-mode``),
                       methods 1 remote_disconnect / 2 remote_reconnect; a disconnected meter records no load
==============  =====  =====================================================================================

Associations: the public client (SAP 16) needs no authentication and may only read; the management client
(SAP 1) may SET and ACTION, after LLS with ``--password`` when ``--auth lls`` (a wrong password is refused with
authentication-failure), or after HLS-GMAC with security suite 0 when ``--auth hls-gmac`` (keys ``--keys EK:AK``,
default the Green Book example keys; system title ``AMF`` + the last 5 characters of the serial; every APDU then
glo-ciphered, client invocation counters checked against replay across associations). Values come from the shared load
model (:class:`simulators.load.LoadModel`). Faults (``--faults timeout=0.05,bad_crc=0.05,exception=0.02,
clock_drift=120,truncate=0.02``), decided per answer with a seeded RNG: ``timeout`` no answer, ``bad_crc`` a
corrupted FCS (HDLC) or wrapper version (TCP wrapper), ``truncate`` half an answer, ``exception`` an
exception-response instead of a GET/SET/ACTION answer, ``clock_drift`` seconds added to the meter clock.
Installation faults (``wiring``: a reversed CT, swapped phases, low voltage, off frequency, low PF, a CT ratio held,
an open relay) are those of :mod:`simulators.wiring`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

from amiflow.errors import ConfigError, FrameError, ProtocolError
from protocols.dlms.acse import Mechanism
from protocols.dlms.ciphering import Ciphering
from protocols.dlms.counters import MemoryCounterStore
from protocols.dlms.hdlc import NEED_DATA, Data, Disconnected, HdlcAddress, HdlcConnection, Role
from protocols.dlms.security import SecurityKeys
from protocols.dlms.server import AccessLevel, ClientPolicy, ServerAssociation
from protocols.dlms.wrapper import WrapperFrame, WrapperFramer
from protocols.dlms.xdlms import ExceptionResponse
from simulators.byte_server import ByteServer, pty_inbox, pty_write
from simulators.dlms_meter import DlmsFaults, DlmsMeter, parse_dlms_faults
from simulators.listen import parse_listen as _parse_listen
from simulators.wiring import Wiring

# the Green Book's example keys: a simulator's default only, never a real meter's
DEFAULT_KEYS = SecurityKeys(bytes(range(16)), bytes(range(0xD0, 0xE0)))

__all__ = ["DEFAULT_KEYS", "DlmsSimulator", "parse_listen"]


class DlmsSimulator(ByteServer):
    """One simulated meter served over TCP or a pty: ``await sim.start()``, then ``sim.uri`` (``sim.port`` or
    ``sim.pty_path``); ``await sim.stop()``. ``sim.meter`` is the :class:`DlmsMeter` (its clock, relay, events)."""

    def __init__(
        self,
        listen: str = "tcp://127.0.0.1:0",
        *,
        hdlc: bool = False,
        auth: str = "none",
        password: bytes | None = None,
        meter: str | None = None,
        seed: int = 1,
        meter_index: int = 0,
        start: datetime | None = None,
        faults: str | DlmsFaults | None = None,
        clock: Callable[[], float] = time.time,
        control_mode: int = 1,
        register_profile: bool = False,
        compress_rows: bool = False,
        phases: int = 1,
        max_pdu: int = 1024,
        keys: SecurityKeys | None = None,
        wiring: Wiring | str | None = None,
    ) -> None:
        self.kind, self.host, self.port = parse_listen(listen)
        self.hdlc = hdlc or self.kind == "pty"
        if auth not in ("none", "lls", "hls-gmac"):
            raise ConfigError(f"--auth {auth!r}: expected none, lls or hls-gmac")
        if auth == "lls" and not password:
            raise ConfigError("--auth lls needs --password")
        self.auth = auth
        self.password = password
        self.faults = faults if isinstance(faults, DlmsFaults) else parse_dlms_faults(faults)
        self.meter = DlmsMeter(
            serial=meter or f"{81000000 + meter_index:08d}",
            seed=seed,
            meter_index=meter_index,
            start_ts=start.timestamp() if start is not None else None,
            clock=clock,
            drift_s=self.faults.clock_drift,
            control_mode=control_mode,
            register_profile=register_profile,
            compress_rows=compress_rows,
            phases=phases,
            wiring=wiring,
        )
        self.max_pdu = max_pdu
        serial = self.meter.serial.encode()[-5:].rjust(5, b"0")
        self.system_title = b"AMF" + serial
        self.keys = keys or DEFAULT_KEYS
        self.ciphering = Ciphering(self.system_title, self.keys, MemoryCounterStore())
        self._peer_counters: dict[bytes, int] = {}
        self.pty_path: str | None = None
        self.faults_injected: dict[str, int] = {}
        self.requests = 0
        self._rng = random.Random(seed * 1_000_003 + meter_index)
        self._init_server()

    @property
    def uri(self) -> str:
        if self.kind == "pty":
            return f"dlms+hdlc://{self.pty_path}"
        return f"dlms+{'hdlc+' if self.hdlc else ''}tcp://{self.host}:{self.port}"

    def policy(self, client_sap: int) -> ClientPolicy | None:
        """Public client 16: read-only without authentication; management client 1: per ``auth``."""
        if client_sap == 16:
            return ClientPolicy(Mechanism.NONE, None, AccessLevel.READ)
        if client_sap != 1:
            return None
        mechanism = {"none": Mechanism.NONE, "lls": Mechanism.LLS, "hls-gmac": Mechanism.HLS_GMAC}[self.auth]
        return ClientPolicy(mechanism, self.password, AccessLevel.MANAGE)

    def association(self, client_sap: int) -> ServerAssociation:
        """A new association for ``client_sap`` (HLS-GMAC gets a fresh random StoC)."""
        return ServerAssociation(
            self.meter,
            self.policy(client_sap),
            max_pdu=self.max_pdu,
            ciphering=self.ciphering,
            challenge=os.urandom(16),
            peer_counters=self._peer_counters,
        )

    # -- faults --------------------------------------------------------------------------------------------------
    def _hit(self, kind: str) -> bool:
        rate = float(getattr(self.faults, kind))
        if rate > 0.0 and self._rng.random() < rate:
            self.faults_injected[kind] = self.faults_injected.get(kind, 0) + 1
            return True
        return False

    def _answer(self, assoc: ServerAssociation, apdu: bytes) -> bytes | None:
        self.requests += 1
        if (
            apdu[:1] in (b"\xc0", b"\xc1", b"\xc3", b"\xc8", b"\xc9", b"\xcb")
            and assoc.associated
            and self._hit("exception")
        ):
            assoc.handle(apdu)  # keep long-transfer state consistent, answer with an exception instead
            return ExceptionResponse(1, 1).to_bytes()
        return assoc.handle(apdu)

    def _damage(self, data: bytes) -> bytes | None:
        """The bytes that actually go out: None (timeout), half (truncate), a broken check (bad_crc) or intact."""
        if self._hit("timeout"):
            return None
        if self._hit("truncate"):
            return data[: max(1, len(data) // 2)]
        if self._hit("bad_crc"):
            if self.hdlc:
                return data[:-3] + bytes((data[-3] ^ 0xFF,)) + data[-2:]
            return b"\x00\x02" + data[2:]
        return data

    # -- sessions ------------------------------------------------------------------------------------------------
    async def _wrapper_session(
        self, recv: Callable[[], Awaitable[bytes]], send: Callable[[bytes], Awaitable[None]]
    ) -> None:
        framer = WrapperFramer()
        assocs: dict[int, ServerAssociation] = {}
        while True:
            framer.receive_data(await recv())
            while True:
                try:
                    frame = framer.next_event()
                except FrameError:
                    continue
                if not isinstance(frame, WrapperFrame):
                    break
                if frame.dest != 1:
                    continue
                assoc = assocs.get(frame.source)
                if assoc is None or frame.apdu[:1] == b"\x60":
                    assoc = assocs[frame.source] = self.association(frame.source)
                answer = self._answer(assoc, frame.apdu)
                if answer is not None:
                    out = self._damage(WrapperFrame(1, frame.source, answer).to_bytes())
                    if out is not None:
                        await send(out)

    async def _hdlc_session(
        self, recv: Callable[[], Awaitable[bytes]], send: Callable[[bytes], Awaitable[None]]
    ) -> None:
        conn = HdlcConnection(Role.SERVER, client=HdlcAddress(16), server=HdlcAddress(1))
        assoc: ServerAssociation | None = None
        while True:
            conn.receive_data(await recv())
            while True:
                try:
                    event = conn.next_event()
                except FrameError:
                    continue
                except ProtocolError:  # a frame out of sequence: drop the link and wait for a new SNRM
                    conn = HdlcConnection(Role.SERVER, client=HdlcAddress(16), server=HdlcAddress(1))
                    break
                finally:
                    pending = conn.data_to_send()
                    out = self._damage(pending) if pending else None
                    if out:
                        await send(out)
                if event is NEED_DATA:
                    break
                if isinstance(event, Disconnected):
                    assoc = None
                elif isinstance(event, Data):
                    if assoc is None or event.apdu[:1] == b"\x60":
                        sap = conn.peer.logical
                        assoc = self.association(sap)
                    answer = self._answer(assoc, event.apdu)
                    if answer is not None:
                        out = self._damage(conn.send(answer))
                        if out is not None:
                            await send(out)

    # -- serving -------------------------------------------------------------------------------------------------
    async def _on_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._adopt_current_task()

        async def recv() -> bytes:
            data = await reader.read(4096)
            if not data:
                raise ConnectionResetError("peer closed")
            return data

        async def send(data: bytes) -> None:
            writer.write(data)
            await writer.drain()

        try:
            await (self._hdlc_session if self.hdlc else self._wrapper_session)(recv, send)
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

        await self._hdlc_session(inbox.get, send)


def parse_listen(text: str) -> tuple[str, str, int]:
    """The simulator's ``--listen`` (see :func:`simulators.listen.parse_listen`)."""
    return _parse_listen(text, tcp_schemes=("dlms+tcp", "dlms+hdlc+tcp"))
