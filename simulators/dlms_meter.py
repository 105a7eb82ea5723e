"""The COSEM objects of the DLMS simulator (see :mod:`simulators.dlms` for the object table) and its fault spec.

Pure apart from the clock callable: values come from :class:`simulators.load.LoadModel`; the relay follows the
class 70 state machine (:func:`protocols.dlms.disconnect.disconnect_transition`) and a disconnected meter records
zero load in its registers, power and load profile. ``wiring`` (:mod:`simulators.wiring`) injects installation faults
into what the meter measures per phase (a reversed CT, swapped phases, low voltage, a transformer ratio held ...).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from amiflow.errors import ConfigError, FrameError
from amiflow.types import Obis, parse_obis
from protocols.dlms import axdr
from protocols.dlms.cosem import CLOCK_OBIS, ControlState, DateTime, ScalerUnit
from protocols.dlms.disconnect import Trigger, disconnect_transition
from protocols.dlms.profile_generic import CaptureObject
from protocols.dlms.server import AccessLevel
from protocols.dlms.xdlms import AccessSelection, ActionResult, AttributeDescriptor, DataAccessResult
from simulators.load import LoadModel
from simulators.wiring import DEFAULT_PF, PhaseSupply, Wiring, parse_wiring, phase_supply

__all__ = ["DlmsFaults", "DlmsMeter", "parse_dlms_faults"]

PERIOD_S = 900
PROFILE = parse_obis("1-0:99.1.0")
EVENT_LOG = parse_obis("0-0:99.98.0")
DISCONNECT = parse_obis("0-0:96.3.10")
EVENT_CODE = parse_obis("0-0:96.11.0")
EV_POWER_UP, EV_CLOCK_SET, EV_DISCONNECT, EV_RECONNECT, EV_MANUAL = 2, 5, 70, 71, 72
# per phase: voltage, current, active power import (A+) and export (A-), power factor, current angle (C of 81.7.E)
_PHASE_CODES = (
    ("32", "31", "21", "22", "33", "40"),
    ("52", "51", "41", "42", "53", "51"),
    ("72", "71", "61", "62", "73", "62"),
)
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
        wiring: Wiring | str | None = None,
    ) -> None:
        if phases not in (1, 3):
            raise ConfigError(f"phases {phases}: a meter has 1 or 3")
        self.phases = phases
        self.wiring = parse_wiring(wiring)
        if self.wiring.reversed_ct > phases:
            raise ConfigError(f"wiring reversed_ct={self.wiring.reversed_ct}: the meter has {phases} phase(s)")
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
        self._power_cache: tuple[tuple[int, int] | None, float] = (None, 0.0)
        if self.wiring.relay_open:  # installed with the relay open: disconnected from the start
            self.control_state = ControlState.DISCONNECTED
            self.outages.append([now, float("inf")])

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
        """Mean power of the interval in progress (zero while the relay is open); cached per interval."""
        if self.control_state is not ControlState.CONNECTED:
            return 0.0
        end = (int(self.clock()) // PERIOD_S + 1) * PERIOD_S
        key = (end, len(self.outages))
        if self._power_cache[0] != key:
            self._power_cache = (key, float(self.interval_wh(np.array([end]))[0]) * 3600 / PERIOD_S)
        return self._power_cache[1]

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
            ratios = self._ratios()
            if key in ratios:
                return axdr.DoubleLongUnsigned(round(ratios[key]))
        if class_id == 3 and attr in (2, 3):
            registers = self._registers()
            if key in registers:
                raw, su = registers[key]
                return raw() if attr == 2 else su.to_value()
        if class_id == 7 and obis in (PROFILE, EVENT_LOG):
            return self._profile_attr(obis, attr, access)
        if class_id == 70 and obis == DISCONNECT and attr in (2, 3, 4):
            state = self.control_state
            return {2: state is ControlState.CONNECTED, 3: axdr.Enum(state), 4: axdr.Enum(self.control_mode)}[attr]
        raise LookupError(key)

    def _import_register(self, t: float) -> float:
        """1-0:1.8.0 as shown: with ``wiring`` register=down counting down from 2**31 Wh, 10 Wh/s faster."""
        wh = self.register_wh(t)
        return float(2**31) - wh - 10.0 * (t - self.start_ts) if self.wiring.register == "down" else wh

    def _ratios(self) -> dict[str, float]:
        """The transformer ratio objects (class 1) the meter holds: only where ``wiring`` sets them."""
        pairs = ((("1-0:0.4.2", "1-0:0.4.5"), self.wiring.ct_ratio), (("1-0:0.4.3", "1-0:0.4.6"), self.wiring.vt_ratio))
        return {code: value for codes, ratio in pairs if ratio for code, value in zip(codes, ratio, strict=True)}

    def _registers(self) -> dict[str, tuple[Callable[[], Any], ScalerUnit]]:
        now = self.clock()
        power = self.power_w
        last = np.array([int(now) // PERIOD_S * PERIOD_S])
        volts = [2300 + (self.meter_index * 7 + i * 13 + int(now) // 60) % 41 - 20 for i in range(3)]
        wh, v, a, w = ScalerUnit(0, 30), ScalerUnit(-1, 35), ScalerUnit(-2, 33), ScalerUnit(0, 27)
        per_mille, deg = ScalerUnit(-3, 255), ScalerUnit(-1, 8)

        def supply() -> PhaseSupply:
            return phase_supply(power(), [x / 10 for x in volts[: self.phases]], self.wiring)

        registers = {
            "1-0:1.8.0": (lambda: axdr.DoubleLongUnsigned(int(self._import_register(now)) % 2**32), wh),
            "1-0:2.8.0": (lambda: axdr.DoubleLongUnsigned(int(self.register_wh(now, True)) % 2**32), wh),
            "1-0:1.7.0": (lambda: axdr.DoubleLong(round(sum(supply().watts))), w),
            "1-0:1.29.0": (lambda: axdr.DoubleLongUnsigned(int(self.interval_wh(last)[0])), wh),
            "1-0:2.29.0": (lambda: axdr.DoubleLongUnsigned(int(self.interval_wh(last, True)[0])), wh),
            "1-0:13.7.0": (lambda: axdr.Long(round((self.wiring.pf or DEFAULT_PF) * 1000)), per_mille),
            "1-0:14.7.0": (lambda: axdr.LongUnsigned(round(self.wiring.frequency * 100)), ScalerUnit(-2, 44)),
        }

        def phase(i: int, value: Callable[[PhaseSupply, int], Any]) -> Callable[[], Any]:
            return lambda: value(supply(), i)

        codes = _PHASE_CODES[: self.phases]
        for i, (vc, ac, pc, xc, fc, angle) in enumerate(codes):
            registers[f"1-0:{vc}.7.0"] = (phase(i, lambda s, k: axdr.LongUnsigned(round(s.volts[k] * 10))), v)
            registers[f"1-0:{ac}.7.0"] = (phase(i, lambda s, k: axdr.LongUnsigned(round(s.amps[k] * 100))), a)
            registers[f"1-0:{pc}.7.0"] = (phase(i, lambda s, k: axdr.DoubleLong(round(max(s.watts[k], 0.0)))), w)
            registers[f"1-0:{xc}.7.0"] = (phase(i, lambda s, k: axdr.DoubleLong(round(max(-s.watts[k], 0.0)))), w)
            registers[f"1-0:{fc}.7.0"] = (phase(i, lambda s, k: axdr.Long(round(s.pf[k] * 1000))), per_mille)
            angle_value = phase(i, lambda s, k: axdr.LongUnsigned(round(s.current_angle[k] * 10)))
            registers[f"1-0:81.7.{angle}"] = (angle_value, deg)
        if self.phases == 3:  # voltage angles of U(L2), U(L3) against U(L1)
            for i, code in ((1, "1-0:81.7.10"), (2, "1-0:81.7.20")):
                registers[code] = (phase(i, lambda s, k: axdr.LongUnsigned(round(s.voltage_angle[k] * 10))), deg)
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
