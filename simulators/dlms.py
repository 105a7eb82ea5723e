"""``amiflow sim dlms``: a simulated DLMS/COSEM meter over the TCP wrapper or HDLC, on TCP or a pty.

``--listen tcp://127.0.0.1:PORT`` (0 = pick one and print it) or ``--listen pty`` (print the slave path); ``--hdlc``
frames with HDLC instead of the wrapper (always HDLC on a pty). The meter (server logical device 1) exposes:

==============  =====  =====================================================================================
0-0:1.0.0       8      clock (settable by the management client; ``clock_drift`` offsets it)
0-0:96.1.0      1      serial number; 0-0:96.1.1 model; 1-0:0.2.0 firmware; 0-0:42.0.0 logical device name
1-0:1.8.0/2.8.0 3      import / export energy registers, Wh (scaler 0)
1-0:1.7.0       3      active power W (the current interval's mean); 1-0:32.7.0 voltage (0.1 V) and 1-0:31.7.0
                       current (0.01 A) of L1, with ``--phases 3`` also L2/L3 (52/51, 72/71) sharing the load
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
authentication-failure). ``--auth hls-gmac`` is refused (HLS is not served yet). Values come from the shared load
model (:class:`simulators.load.LoadModel`). Faults (``--faults timeout=0.05,bad_crc=0.05,exception=0.02,
clock_drift=120,truncate=0.02``), decided per answer with a seeded RNG: ``timeout`` no answer, ``bad_crc`` a
corrupted FCS (HDLC) or wrapper version (TCP wrapper), ``truncate`` half an answer, ``exception`` an
exception-response instead of a GET/SET/ACTION answer, ``clock_drift`` seconds added to the meter clock.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import time
import tty
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from amiflow.commands import Command
from amiflow.errors import ConfigError, FrameError
from amiflow.settings import Settings
from amiflow.types import Obis, parse_obis
from protocols.dlms import axdr
from protocols.dlms.acse import Mechanism
from protocols.dlms.cosem import CLOCK_OBIS, CaptureObject, ControlState, DateTime, ScalerUnit
from protocols.dlms.disconnect import Trigger, disconnect_transition
from protocols.dlms.hdlc import NEED_DATA, Data, Disconnected, HdlcAddress, HdlcConnection, Role
from protocols.dlms.server import AccessLevel, ClientPolicy, ServerAssociation
from protocols.dlms.wrapper import WrapperFrame, WrapperFramer
from protocols.dlms.xdlms import AccessSelection, ActionResult, AttributeDescriptor, DataAccessResult, ExceptionResponse
from simulators.load import LoadModel

__all__ = ["SIM_DLMS", "DlmsFaults", "DlmsMeter", "DlmsSimulator", "parse_dlms_faults"]

PERIOD_S = 900
PROFILE = parse_obis("1-0:99.1.0")
EVENT_LOG = parse_obis("0-0:99.98.0")
DISCONNECT = parse_obis("0-0:96.3.10")
EVENT_CODE = parse_obis("0-0:96.11.0")
EV_POWER_UP, EV_CLOCK_SET, EV_DISCONNECT, EV_RECONNECT, EV_MANUAL = 2, 5, 70, 71, 72
_O = parse_obis


@dataclass(frozen=True, slots=True)
class DlmsFaults:
    """Per-answer fault probabilities, and the clock drift in seconds."""

    timeout: float = 0.0
    bad_crc: float = 0.0
    exception: float = 0.0
    truncate: float = 0.0
    clock_drift: float = 0.0


def parse_dlms_faults(spec: str | None) -> DlmsFaults:
    """``timeout=0.05,bad_crc=0.05,exception=0.02,clock_drift=120,truncate=0.02``; ConfigError when wrong."""
    values: dict[str, float] = {}
    for item in (spec or "").split(","):
        if not item.strip() or item.strip() == "none":
            continue
        kind, sep, text = item.strip().partition("=")
        if not sep or kind not in DlmsFaults.__dataclass_fields__:
            known = ", ".join(DlmsFaults.__dataclass_fields__)
            raise ConfigError(f"--faults item {item.strip()!r}: expected KIND=VALUE with KIND one of {known}")
        try:
            values[kind] = float(text)
        except ValueError:
            raise ConfigError(f"--faults item {item.strip()!r}: {text!r} is not a number") from None
        if kind != "clock_drift" and not 0.0 <= values[kind] <= 1.0:
            raise ConfigError(f"--faults item {item.strip()!r}: a rate must be between 0 and 1")
    return DlmsFaults(**values)


class DlmsMeter:
    """The meter's COSEM objects (the :class:`~protocols.dlms.server.ObjectModel` of the simulator)."""

    def __init__(
        self,
        *,
        serial: str,
        seed: int = 1,
        meter_index: int = 0,
        start_ts: float | None = None,
        clock: Callable[[], float] = time.time,
        drift_s: float = 0.0,
        control_mode: int = 1,
        register_profile: bool = False,
        profile_entries: int = 96 * 62,
        compress_rows: bool = False,
        phases: int = 1,
    ) -> None:
        if phases not in (1, 3):
            raise ConfigError(f"phases {phases}: a meter has 1 or 3")
        self.phases = phases
        self.serial = serial
        self.load = LoadModel(seed)
        self.meter_index = meter_index
        self.clock = clock
        self.drift_s = drift_s
        now = clock()
        self.start_ts = int((start_ts if start_ts is not None else now - 10 * 86400) // PERIOD_S * PERIOD_S)
        self.control_mode = control_mode
        self.control_state = ControlState.CONNECTED
        self.register_profile = register_profile
        self.profile_entries = profile_entries
        self.compress_rows = compress_rows
        self.outages: list[list[float]] = []  # [off_ts, on_ts or inf] of a disconnected relay
        self.events: list[tuple[int, int]] = [(self.start_ts, EV_POWER_UP)]

    # -- values ------------------------------------------------------------------------------------------------
    def now(self) -> float:
        return self.clock() + self.drift_s

    def _off_mask(self, ts_end: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        mask = np.zeros(len(ts_end), dtype=bool)
        for off, on in self.outages:
            mask |= (ts_end > off) & (ts_end <= on + PERIOD_S - 1)
        return mask

    def interval_wh(self, ts_end: np.ndarray[Any, Any], export: bool = False) -> np.ndarray[Any, Any]:
        fn = self.load.export_energy_wh if export else self.load.interval_energy_wh
        values = np.asarray(fn(self.meter_index, ts_end), dtype=np.float64)
        return np.where(self._off_mask(ts_end), 0.0, values)

    def register_wh(self, t: float, export: bool = False) -> float:
        fn = self.load.export_register_wh if export else self.load.register_wh
        total = float(fn(self.meter_index, int(t)))
        for off, on in self.outages:
            if off < t:
                total -= float(fn(self.meter_index, int(min(t, on)))) - float(fn(self.meter_index, int(off)))
        return total

    def power_w(self) -> float:
        if self.control_state is not ControlState.CONNECTED:
            return 0.0
        end = np.array([(int(self.clock()) // PERIOD_S + 1) * PERIOD_S])
        return float(self.interval_wh(end)[0]) * 3600 / PERIOD_S

    def _profile_ts(self) -> np.ndarray[Any, Any]:
        last = int(self.clock()) // PERIOD_S * PERIOD_S
        first = max(self.start_ts + PERIOD_S, last - (self.profile_entries - 1) * PERIOD_S)
        return np.arange(first, last + 1, PERIOD_S, dtype=np.int64)

    # -- object model --------------------------------------------------------------------------------------------
    def get(self, desc: AttributeDescriptor, access: AccessSelection | None, level: AccessLevel) -> bytes | int:
        try:
            value = self._get(desc.class_id, desc.obis, desc.index, access)
        except LookupError:
            return DataAccessResult.OBJECT_UNDEFINED
        except (FrameError, ValueError, TypeError):
            return DataAccessResult.TYPE_UNMATCHED
        return bytes(value) if isinstance(value, _Encoded) else axdr.encode(value)

    def _get(self, class_id: int, obis: Obis, attr: int, access: AccessSelection | None) -> Any:
        key = str(obis)
        if attr == 1:
            return obis.to_bytes()
        if class_id == 8 and obis == CLOCK_OBIS:
            if attr == 2:
                return DateTime.from_datetime(datetime.fromtimestamp(self.now(), UTC)).to_bytes()
            if attr == 3:
                return axdr.Long(0)
        if class_id == 1 and attr == 2:
            texts = {
                "0-0:96.1.0": self.serial,
                "0-0:96.1.1": "AMF-SIM-DLMS",
                "1-0:0.2.0": "1.4.2",
                "0-0:42.0.0": f"AMF{self.serial}",
            }
            if key in texts:
                return texts[key].encode()
        if class_id == 3 and attr in (2, 3) and key in self._registers():
            raw, su = self._registers()[key]
            return raw() if attr == 2 else su.to_value()
        if class_id == 7 and obis in (PROFILE, EVENT_LOG):
            return self._profile_attr(obis, attr, access)
        if class_id == 70 and obis == DISCONNECT and attr in (2, 3, 4):
            state = self.control_state
            return {2: state is ControlState.CONNECTED, 3: axdr.Enum(state), 4: axdr.Enum(self.control_mode)}[attr]
        raise LookupError(key)

    def _registers(self) -> dict[str, tuple[Callable[[], Any], ScalerUnit]]:
        now = self.clock()
        power = self.power_w()
        last = np.array([int(now) // PERIOD_S * PERIOD_S])
        volts = [2300 + (self.meter_index * 7 + i * 13 + int(now) // 60) % 41 - 20 for i in range(3)]
        wh, v, a, w = ScalerUnit(0, 30), ScalerUnit(-1, 35), ScalerUnit(-2, 33), ScalerUnit(0, 27)

        def amps(i: int) -> axdr.LongUnsigned:
            return axdr.LongUnsigned(round(power / self.phases / (volts[i] / 10) * 100))

        registers = {
            "1-0:1.8.0": (lambda: axdr.DoubleLongUnsigned(int(self.register_wh(now)) % 2**32), wh),
            "1-0:2.8.0": (lambda: axdr.DoubleLongUnsigned(int(self.register_wh(now, True)) % 2**32), wh),
            "1-0:1.7.0": (lambda: axdr.DoubleLong(round(power)), w),
            "1-0:1.29.0": (lambda: axdr.DoubleLongUnsigned(int(self.interval_wh(last)[0])), wh),
            "1-0:2.29.0": (lambda: axdr.DoubleLongUnsigned(int(self.interval_wh(last, True)[0])), wh),
        }
        for i, (vc, ac) in enumerate((("32", "31"), ("52", "51"), ("72", "71"))[: self.phases]):
            registers[f"1-0:{vc}.7.0"] = (lambda i=i: axdr.LongUnsigned(volts[i]), v)  # type: ignore[misc]
            registers[f"1-0:{ac}.7.0"] = (lambda i=i: amps(i), a)  # type: ignore[misc]
        return registers

    def _capture_objects(self, obis: Obis) -> list[CaptureObject]:
        clock = CaptureObject(8, CLOCK_OBIS, 2)
        if obis == EVENT_LOG:
            return [clock, CaptureObject(1, EVENT_CODE, 2)]
        cols = ("1-0:1.8.0", "1-0:2.8.0") if self.register_profile else ("1-0:1.29.0", "1-0:2.29.0")
        return [clock, *(CaptureObject(3, _O(c), 2) for c in cols)]

    def _profile_attr(self, obis: Obis, attr: int, access: AccessSelection | None) -> Any:
        if attr == 3:
            return [c.to_value() for c in self._capture_objects(obis)]
        if attr == 4:
            return axdr.DoubleLongUnsigned(PERIOD_S if obis == PROFILE else 0)
        ts = self._profile_ts() if obis == PROFILE else np.array([t for t, _ in self.events], dtype=np.int64)
        if attr in (7, 8):
            return axdr.DoubleLongUnsigned(
                len(ts) if attr == 7 else (self.profile_entries if obis == PROFILE else 1000)
            )
        if attr != 2:
            raise LookupError(attr)
        index = self._select(ts, access)
        return self._encode_rows(obis, ts[index], index)

    @staticmethod
    def _select(ts: np.ndarray[Any, Any], access: AccessSelection | None) -> np.ndarray[Any, Any]:
        if access is None:
            return np.arange(len(ts))
        p = access.parameters
        if access.selector == 1:
            frm = DateTime.from_bytes(p[1]).to_datetime().timestamp()
            to = DateTime.from_bytes(p[2]).to_datetime().timestamp()
            return np.nonzero((ts >= frm) & (ts <= to))[0]
        if access.selector == 2:
            first, last = int(p[0]), int(p[1]) or len(ts)
            return np.arange(max(first, 1) - 1, min(last, len(ts)))
        raise ValueError(f"selector {access.selector}")

    def _encode_rows(self, obis: Obis, ts: np.ndarray[Any, Any], index: np.ndarray[Any, Any]) -> _Encoded:
        if obis == EVENT_LOG:
            rows: list[Any] = [(_dt(self.events[i][0]), axdr.LongUnsigned(self.events[i][1])) for i in index.tolist()]
            return _Encoded(axdr.encode(rows))
        if self.register_profile:
            a = [self.register_wh(t) for t in ts.tolist()]
            b = [self.register_wh(t, True) for t in ts.tolist()]
        else:
            a, b = self.interval_wh(ts).tolist(), self.interval_wh(ts, True).tolist()
        out = bytearray(b"\x01" + axdr.encode_length(len(ts)))
        prev: int | None = None
        for t, x, y in zip(ts.tolist(), a, b, strict=True):
            clock = None if self.compress_rows and prev is not None and t == prev + PERIOD_S else _dt(t)
            out += axdr.encode(
                (clock, axdr.DoubleLongUnsigned(int(x) % 2**32), axdr.DoubleLongUnsigned(int(y) % 2**32))
            )
            prev = t
        return _Encoded(out)

    def set(self, desc: AttributeDescriptor, data: bytes, level: AccessLevel) -> int:
        if level < AccessLevel.MANAGE:
            return DataAccessResult.READ_WRITE_DENIED
        try:
            value = axdr.decode(data)
            if desc.class_id == 8 and desc.obis == CLOCK_OBIS and desc.index == 2 and isinstance(value, bytes):
                self.drift_s = DateTime.from_bytes(value).to_datetime().timestamp() - self.clock()
                self.events.append((int(self.now()), EV_CLOCK_SET))
                return DataAccessResult.SUCCESS
            if desc.class_id == 70 and desc.obis == DISCONNECT and desc.index == 4 and isinstance(value, int):
                if not 0 <= value <= 6:
                    return DataAccessResult.TYPE_UNMATCHED
                self.control_mode = int(value)
                return DataAccessResult.SUCCESS
        except (FrameError, ValueError):
            return DataAccessResult.TYPE_UNMATCHED
        return DataAccessResult.READ_WRITE_DENIED if self._known(desc) else DataAccessResult.OBJECT_UNDEFINED

    def _known(self, desc: AttributeDescriptor) -> bool:
        try:
            self._get(desc.class_id, desc.obis, desc.index, None)
        except (LookupError, ValueError):
            return False
        return True

    def action(self, desc: AttributeDescriptor, data: bytes | None, level: AccessLevel) -> tuple[int, bytes | None]:
        if desc.class_id != 70 or desc.obis != DISCONNECT or desc.index not in (1, 2):
            return ActionResult.OBJECT_UNDEFINED, None
        trigger = Trigger.REMOTE_DISCONNECT if desc.index == 1 else Trigger.REMOTE_RECONNECT
        return (ActionResult.SUCCESS if self.trigger(trigger) else ActionResult.TEMPORARY_FAILURE), None

    def trigger(self, trigger: Trigger) -> bool:
        """Apply a class-70 trigger (remote, or the customer's button: MANUAL_RECONNECT); False when refused."""
        new = disconnect_transition(self.control_mode, self.control_state, trigger)
        if new is None:
            return False
        now = self.clock()
        was_on = self.control_state is ControlState.CONNECTED
        if was_on and new is not ControlState.CONNECTED:
            self.outages.append([now, float("inf")])
        elif not was_on and new is ControlState.CONNECTED and self.outages:
            self.outages[-1][1] = now
        if new is not self.control_state:
            code = {Trigger.REMOTE_DISCONNECT: EV_DISCONNECT, Trigger.REMOTE_RECONNECT: EV_RECONNECT}.get(
                trigger, EV_MANUAL
            )
            self.events.append((int(self.now()), code))
        self.control_state = new
        return True


class _Encoded(bytes):
    """A value already in A-XDR (the profile buffers are built row by row)."""


def _dt(ts: int) -> bytes:
    return DateTime.from_datetime(datetime.fromtimestamp(ts, UTC)).to_bytes()


class DlmsSimulator:
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
        )
        self.max_pdu = max_pdu
        self.pty_path: str | None = None
        self.faults_injected: dict[str, int] = {}
        self.requests = 0
        self._rng = random.Random(seed * 1_000_003 + meter_index)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._fds: tuple[int, int] | None = None

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

    # -- faults --------------------------------------------------------------------------------------------------
    def _hit(self, kind: str) -> bool:
        rate = float(getattr(self.faults, kind))
        if rate > 0.0 and self._rng.random() < rate:
            self.faults_injected[kind] = self.faults_injected.get(kind, 0) + 1
            return True
        return False

    def _answer(self, assoc: ServerAssociation, apdu: bytes) -> bytes | None:
        self.requests += 1
        if apdu[:1] in (b"\xc0", b"\xc1", b"\xc3") and assoc.associated and self._hit("exception"):
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
                    assoc = assocs[frame.source] = ServerAssociation(
                        self.meter, self.policy(frame.source), max_pdu=self.max_pdu
                    )
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
                except Exception:  # a frame out of sequence: answer with DM and wait for a new SNRM
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
                        sap = conn._peer.logical
                        assoc = ServerAssociation(self.meter, self.policy(sap), max_pdu=self.max_pdu)
                    answer = self._answer(assoc, event.apdu)
                    if answer is not None:
                        out = self._damage(conn.send(answer))
                        if out is not None:
                            await send(out)

    # -- serving -------------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Listen (TCP) or open the pty, and serve in the background."""
        if self.kind == "tcp":
            self._server = await asyncio.start_server(self._on_tcp, self.host, self.port)
            self.port = self._server.sockets[0].getsockname()[1]
            return
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._fds = (master, slave)
        self.pty_path = os.ttyname(slave)
        self._spawn(self._serve_pty(master))

    async def stop(self) -> None:
        """Close the listener or pty and end every session."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None
        if self._fds is not None:
            master, slave = self._fds
            self._fds = None
            with contextlib.suppress(OSError, RuntimeError):
                asyncio.get_running_loop().remove_reader(master)
            for fd in (master, slave):
                with contextlib.suppress(OSError):
                    os.close(fd)

    async def __aenter__(self) -> DlmsSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _on_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

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
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[bytes] = asyncio.Queue()

        def readable() -> None:
            try:
                data = os.read(master, 4096)
            except (BlockingIOError, OSError):
                return
            if data:
                inbox.put_nowait(data)

        loop.add_reader(master, readable)

        async def send(data: bytes) -> None:
            view = memoryview(data)
            while view:
                try:
                    view = view[os.write(master, view) :]
                except BlockingIOError:
                    await asyncio.sleep(0.005)

        await self._hdlc_session(inbox.get, send)


def parse_listen(text: str) -> tuple[str, str, int]:
    """``tcp://HOST:PORT`` (also ``dlms+tcp://``) -> ("tcp", host, port); ``pty`` -> ("pty", "", 0)."""
    if text in ("pty", "pty://"):
        return "pty", "", 0
    scheme, sep, rest = text.partition("://")
    host, _, port = rest.rpartition(":")
    if sep and scheme in ("tcp", "dlms+tcp", "dlms+hdlc+tcp") and host and port.isdigit():
        return "tcp", host.strip("[]"), int(port)
    raise ConfigError(f"--listen {text!r}: expected tcp://127.0.0.1:PORT (0 = pick one) or pty")


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", default="tcp://127.0.0.1:0", help="tcp://127.0.0.1:PORT (0 = pick one) or pty")
    p.add_argument("--hdlc", action="store_true", help="HDLC framing on TCP (a pty always uses HDLC)")
    p.add_argument("--auth", default="none", choices=("none", "lls", "hls-gmac"), help="management client auth")
    p.add_argument("--password", default=None, help="the LLS password of the management client (SAP 1)")
    p.add_argument("--meter", default=None, help="serial number / meter id (default from --meter-index)")
    p.add_argument("--meter-index", type=int, default=0, help="which meter of the load model (default 0)")
    p.add_argument("--seed", type=int, default=1, help="seed of the load model and of the faults (default 1)")
    p.add_argument("--start", default=None, help="ISO time the load profile starts (default 10 days ago)")
    p.add_argument("--faults", default=None, help="e.g. timeout=0.05,bad_crc=0.05,exception=0.02,clock_drift=120")
    p.add_argument("--control-mode", type=int, default=1, choices=range(7), help="disconnect control_mode (1)")
    p.add_argument("--phases", type=int, default=1, choices=(1, 3), help="1 (L1 only) or 3 phases (default 1)")
    p.add_argument("--profile", default="deltas", choices=("deltas", "registers"), help="profile columns")


def _run(args: argparse.Namespace, settings: Settings) -> int:
    start = None
    if args.start:
        try:
            start = datetime.fromisoformat(args.start.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"--start {args.start!r}: expected an ISO 8601 time") from None
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
    sim = DlmsSimulator(
        args.listen,
        hdlc=args.hdlc,
        auth=args.auth,
        password=args.password.encode() if args.password else None,
        meter=args.meter,
        seed=args.seed,
        meter_index=args.meter_index,
        start=start,
        faults=args.faults,
        control_mode=args.control_mode,
        register_profile=args.profile == "registers",
        phases=args.phases,
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with sim:
            where = f"port {sim.port}" if sim.kind == "tcp" else f"pty {sim.pty_path}"
            print(f"dlms simulator (meter {sim.meter.serial}) listening on {where}: {sim.uri}", flush=True)
            await stop.wait()

    asyncio.run(main())
    return 0


SIM_DLMS = Command(
    help="serve a simulated DLMS/COSEM meter (TCP wrapper or HDLC, TCP or a pty)",
    add_arguments=_add_arguments,
    run=_run,
)
