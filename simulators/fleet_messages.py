"""The MQTT fleet's message generator: load model -> canonical payloads with faults. No I/O, no clock.

Work is vectorized per time step across meters (energy, registers, fault decisions); only the final JSON text is built
per meter, from precomputed per-step fragments. The relays commands open and close: :mod:`simulators.fleet_relays`.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import numpy as np
import numpy.typing as npt

from simulators.faults import FaultInjector, FaultSpec
from simulators.fleet_config import FleetConfig, FleetStats
from simulators.fleet_relays import FleetRelays
from simulators.load import LoadModel

__all__ = ["Generated", "MessageGenerator"]

log = logging.getLogger(__name__)

_SUFFIX = ',"unit":"kWh"}'
_BLOCK = 2000  # meters per block of generated messages


class _StopFlag(Protocol):
    def is_set(self) -> bool: ...


@dataclass(slots=True)
class Generated:
    """Messages of one step, in publishing order: (meter index, topic leaf, payload)."""

    messages: list[tuple[int, str, bytes]] = field(default_factory=list)


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _frag(obis: str, ts_iso: str) -> str:
    return f'{{"obis":"{obis}","ts":"{ts_iso}","value":'


@dataclass(slots=True)
class _Step:
    """One step's arrays (meters x intervals of the step) and its shared text fragments."""

    index: int
    ts: npt.NDArray[np.int64]
    imp_kwh: npt.NDArray[np.float64]
    exp_kwh: npt.NDArray[np.float64]  # rows of PV meters, by pv_row
    reg_kwh: list[float]
    ereg_kwh: list[float]
    imp_frag: list[str]
    exp_frag: list[str]
    reg_frag: str
    ereg_frag: str
    gap: npt.NDArray[np.bool_]
    spike: npt.NDArray[np.bool_]


class MessageGenerator:
    """Turns the load model into the fleet's payloads, keeping per-meter relay, register and reorder state."""

    def __init__(self, config: FleetConfig, model: LoadModel, spec: FaultSpec, stats: FleetStats) -> None:
        self.cfg = config
        self.model = model
        self.inj = FaultInjector(spec, config.seed)
        self.stats = stats
        n = config.meters
        self.meters = np.arange(n, dtype=np.int64)
        self.names = [config.meter_name(m) for m in range(n)]
        self.pv_idx = np.flatnonzero(model.has_pv(self.meters))
        self.pv_row = np.full(n, -1, dtype=np.int64)
        self.pv_row[self.pv_idx] = np.arange(self.pv_idx.size)
        self.relays = FleetRelays(self.inj.uniform("value", 11, self.meters) < config.armed_share)
        self.lost_wh = np.zeros(n)
        self.lost_exp_wh = np.zeros(n)
        self.wrap_wh = np.zeros(n)
        self.held: dict[int, list[tuple[int, str, bytes]]] = {}

    # -- steps -------------------------------------------------------------------------------------------------

    def steps(self, stop: _StopFlag) -> Iterator[tuple[int, Iterator[Generated]]]:
        """Yield (last interval end, its messages in blocks) per step of ``per_message`` intervals, in time order.

        Consume each step's blocks before asking for the next step.
        """
        cfg, k_per = self.cfg, self.cfg.per_message
        total = cfg.intervals
        n_steps = math.ceil(total / k_per)
        chunk = max(1, (86_400 // cfg.interval_s) // k_per)  # steps computed together: about a day of intervals
        for c0 in range(0, n_steps, chunk):
            c1 = min(n_steps, c0 + chunk)
            i0, i1 = c0 * k_per, min(total, c1 * k_per)
            ts = cfg.start_ts + cfg.interval_s * np.arange(i0 + 1, i1 + 1, dtype=np.int64)
            imp = self.model.interval_energy_wh(self.meters, ts, interval_s=cfg.interval_s)
            exp = self.model.export_energy_wh(self.pv_idx, ts, interval_s=cfg.interval_s)
            ends = np.array([min((s + 1) * k_per, total) - 1 - i0 for s in range(c0, c1)])
            reg = self.model.register_wh(self.meters, ts[ends])
            ereg = self.model.export_register_wh(self.pv_idx, ts[ends])
            for s in range(c0, c1):
                if stop.is_set():
                    return
                a, b = s * k_per - i0, min((s + 1) * k_per, total) - i0
                out = self._step(s, i0 + a, ts[a:b], imp[:, a:b], exp[:, a:b], reg[:, s - c0], ereg[:, s - c0])
                if not self.stats.first_ts:
                    self.stats.first_ts = int(ts[a])
                self.stats.last_ts = int(ts[b - 1])
                yield int(ts[b - 1]), out

    def flush(self) -> Generated:
        """Messages still held back by ``reorder`` (their successor never came): publish them last."""
        out = Generated()
        for m in sorted(self.held):
            out.messages.extend(self.held.pop(m))
        return out

    def _step(
        self,
        s: int,
        first: int,
        ts: npt.NDArray[np.int64],
        imp: npt.NDArray[np.float64],
        exp: npt.NDArray[np.float64],
        reg: npt.NDArray[np.float64],
        ereg: npt.NDArray[np.float64],
    ) -> Iterator[Generated]:
        out = Generated()
        step_start = int(ts[0]) - self.cfg.interval_s
        self._button_presses(step_start, out)
        imp, exp = self._apply_relay(imp, exp)
        m_all, inj = self.meters, self.inj
        malformed = inj.hits("malformed", m_all, s)
        roll = inj.hits("rollover", m_all, s) & ~malformed
        if roll.any():
            self.wrap_wh[roll] += inj.rollover_wrap_wh(reg[roll] - self.lost_wh[roll] - self.wrap_wh[roll])
        reg_disp = reg - self.lost_wh - self.wrap_wh
        ereg_disp = ereg - self.lost_exp_wh[self.pv_idx]
        idx = first + np.arange(ts.size, dtype=np.int64)
        tss = [_iso(int(t)) for t in ts]
        step = _Step(
            index=s,
            ts=ts,
            imp_kwh=imp / 1000.0,
            exp_kwh=exp / 1000.0,
            reg_kwh=(reg_disp / 1000.0).tolist(),
            ereg_kwh=(ereg_disp / 1000.0).tolist(),
            imp_frag=[_frag("1-0:1.29.0", t) for t in tss],
            exp_frag=[_frag("1-0:2.29.0", t) for t in tss],
            reg_frag=_frag("1-0:1.8.0", tss[-1]),
            ereg_frag=_frag("1-0:2.8.0", tss[-1]),
            gap=inj.hits("gap", m_all[:, None], idx[None, :]),
            spike=inj.hits("spike", m_all[:, None], idx[None, :]),
        )
        step.spike &= ~step.gap
        drift = inj.hits("drift", m_all, s)
        dup, reorder, spoof = inj.hits("dup", m_all, s), inj.hits("reorder", m_all, s), inj.hits("spoof", m_all, s)
        special = malformed | drift | step.gap.any(axis=1) | step.spike.any(axis=1)
        seq = int(ts[-1]) // self.cfg.interval_s
        return self._messages(step, seq, out, malformed, roll, drift, dup, reorder, spoof, special)

    def _messages(
        self,
        step: _Step,
        seq: int,
        out: Generated,
        malformed: npt.NDArray[np.bool_],
        roll: npt.NDArray[np.bool_],
        drift: npt.NDArray[np.bool_],
        dup: npt.NDArray[np.bool_],
        reorder: npt.NDArray[np.bool_],
        spoof: npt.NDArray[np.bool_],
        special: npt.NDArray[np.bool_],
    ) -> Iterator[Generated]:
        """The step's messages in blocks of meters (bounded memory: the caller publishes between blocks)."""
        ts = step.ts
        for m in range(self.cfg.meters):
            if m % _BLOCK == 0 and out.messages:
                yield out
                out = Generated()
            if special[m]:
                body, n_read, n_spike = self._body_faulty(m, step, seq, bool(drift[m]))
            else:
                body, n_read, n_spike = self._body(m, step, seq), self._count(m, ts.size), 0
            msgs = self._account(m, body, n_read, n_spike, bool(malformed[m]), bool(dup[m]), bool(spoof[m]))
            if roll[m]:
                self.stats.faults["rollover"] = self.stats.faults.get("rollover", 0) + 1
                self.stats.readings_flagged += 1 + (1 if dup[m] else 0)
            self._order(m, msgs, bool(reorder[m]), out)
        self._outages(step.index, int(ts[0]) - self.cfg.interval_s, ts.size, out)
        self._count_faults(step, drift)
        yield out

    def _apply_relay(
        self, imp: npt.NDArray[np.float64], exp: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """An open relay: no energy flows. The model's energy is kept out of the registers (``lost``)."""
        off = self.relays.open()
        if not off.any():
            return imp, exp
        imp, exp = imp.copy(), exp.copy()
        self.lost_wh[off] += imp[off].sum(axis=1)
        imp[off] = 0.0
        pv_off = off[self.pv_idx]
        self.lost_exp_wh[self.pv_idx[pv_off]] += exp[pv_off].sum(axis=1)
        exp[pv_off] = 0.0
        return imp, exp

    # -- payload text --------------------------------------------------------------------------------------------

    def _count(self, m: int, n_intervals: int) -> int:
        return (n_intervals + 1) * (2 if self.pv_row[m] >= 0 else 1)

    def _body(self, m: int, st: _Step, seq: int) -> bytes:
        parts = [f + repr(v) + _SUFFIX for f, v in zip(st.imp_frag, st.imp_kwh[m].tolist(), strict=True)]
        r = int(self.pv_row[m])
        if r >= 0:
            parts += [f + repr(v) + _SUFFIX for f, v in zip(st.exp_frag, st.exp_kwh[r].tolist(), strict=True)]
        parts.append(st.reg_frag + repr(st.reg_kwh[m]) + _SUFFIX)
        if r >= 0:
            parts.append(st.ereg_frag + repr(st.ereg_kwh[r]) + _SUFFIX)
        head = f'{{"meter":"{self.names[m]}","seq":{seq},"readings":['
        return (head + ",".join(parts) + "]}").encode()

    def _body_faulty(self, m: int, st: _Step, seq: int, drift: bool) -> tuple[bytes, int, int]:
        """The payload with gaps, spikes and a drifted clock; returns (payload, readings, spiked readings)."""
        shift = int(self.inj.drift_s(m, st.index)) if drift else 0
        tss = [_iso(int(t) + shift) for t in st.ts]
        r = int(self.pv_row[m])
        keep = ~st.gap[m]
        spikes = self.inj.spike_kwh(m, st.ts) if st.spike[m].any() else None
        parts: list[str] = []
        for k in np.flatnonzero(keep):
            v = float(spikes[k]) if spikes is not None and st.spike[m, k] else float(st.imp_kwh[m, k])
            parts.append(_frag("1-0:1.29.0", tss[k]) + repr(v) + _SUFFIX)
        if r >= 0:
            parts += [
                _frag("1-0:2.29.0", tss[k]) + repr(float(st.exp_kwh[r, k])) + _SUFFIX for k in np.flatnonzero(keep)
            ]
        parts.append(_frag("1-0:1.8.0", tss[-1]) + repr(st.reg_kwh[m]) + _SUFFIX)
        if r >= 0:
            parts.append(_frag("1-0:2.8.0", tss[-1]) + repr(st.ereg_kwh[r]) + _SUFFIX)
        head = f'{{"meter":"{self.names[m]}","seq":{seq},"readings":['
        return (head + ",".join(parts) + "]}").encode(), len(parts), int(st.spike[m].sum())

    # -- accounting and ordering --------------------------------------------------------------------------------

    def _account(
        self, m: int, body: bytes, n_read: int, n_spike: int, malformed: bool, dup: bool, spoof: bool
    ) -> list[tuple[int, str, bytes]]:
        st, faults = self.stats, self.stats.faults
        if malformed:
            faults["malformed"] = faults.get("malformed", 0) + 1
            st.messages += 1
            st.messages_quarantined += 1
            st.readings_lost += n_read
            return [(m, "readings", self.inj.malform(body, m, st.messages))]
        msgs = [(m, "readings", body)]
        st.messages += 1
        st.readings_published += n_read
        st.readings_expected += n_read - n_spike
        st.readings_quarantined += n_spike
        if dup:
            faults["dup"] = faults.get("dup", 0) + 1
            msgs.append((m, "readings", body))
            st.messages += 1
            st.readings_published += n_read
            st.readings_duplicate += n_read - n_spike
            st.readings_quarantined += n_spike
        if spoof:
            faults["spoof"] = faults.get("spoof", 0) + 1
            other = self.names[(m + 1) % len(self.names)] if len(self.names) > 1 else "X" + self.names[m]
            forged = body.replace(f'"meter":"{self.names[m]}"'.encode(), f'"meter":"{other}"'.encode(), 1)
            msgs.append((m, "readings", forged))
            st.messages += 1
            st.messages_quarantined += 1
            st.readings_published += n_read
            st.readings_quarantined += n_read
        return msgs

    def _order(self, m: int, msgs: list[tuple[int, str, bytes]], reorder: bool, out: Generated) -> None:
        held = self.held.pop(m, None)
        if held is not None:
            out.messages.extend(msgs)
            out.messages.extend(held)
        elif reorder:
            self.stats.faults["reorder"] = self.stats.faults.get("reorder", 0) + 1
            self.held[m] = msgs
        else:
            out.messages.extend(msgs)

    def _count_faults(self, st: _Step, drift: npt.NDArray[np.bool_]) -> None:
        faults = self.stats.faults
        for kind, n in (("gap", int(st.gap.sum())), ("spike", int(st.spike.sum())), ("drift", int(drift.sum()))):
            if n:
                faults[kind] = faults.get(kind, 0) + n
        gapped = st.gap.sum(axis=1)
        self.stats.intervals_gapped += int(gapped.sum() + gapped[self.pv_idx].sum())

    # -- events and commands -------------------------------------------------------------------------------------

    def _events(self, m: int, events: list[dict[str, object]]) -> tuple[int, str, bytes]:
        self.stats.event_messages += 1
        self.stats.events += len(events)
        body = json.dumps({"meter": self.names[m], "events": events}, separators=(",", ":"))
        return m, "events", body.encode()

    def _outages(self, s: int, step_start: int, n_intervals: int, out: Generated) -> None:
        """Short power outages (power_down, then power_up 30 to 600 s later): too short to change the energy."""
        span = n_intervals * self.cfg.interval_s
        rate = self.cfg.outages_per_day * span / 86_400
        if rate <= 0:
            return
        hit = np.flatnonzero(self.inj.uniform("value", 12, self.meters, s) < rate)
        for m in hit.tolist():
            down = step_start + int(self.inj.uniform("value", 13, m, s) * (span - 600))
            duration = 30 + int(self.inj.uniform("value", 14, m, s) * 570)
            events: list[dict[str, object]] = [
                {"ts": _iso(down), "code": "power_down", "detail": {}},
                {"ts": _iso(down + duration), "code": "power_up", "detail": {"duration_s": duration}},
            ]
            out.messages.append(self._events(m, events))

    def _button_presses(self, ts: int, out: Generated) -> None:
        for m in self.relays.press_buttons():
            out.messages.append(self._events(m, [{"ts": _iso(ts), "code": "relay_closed", "detail": {"by": "button"}}]))

    def command(self, m: int, payload: bytes, now_ts: int) -> list[tuple[str, bytes]]:
        """Obey one ``cmd`` payload for meter ``m``: (topic leaf, payload) to publish, the result first."""
        try:
            doc = json.loads(payload)
            cmd_id, action = doc["id"], doc["action"]
        except (ValueError, TypeError, KeyError):
            log.warning("meter %s: ignoring a command that is not JSON with id and action", self.names[m])
            return []
        result, events = self.relays.obey(m, action, cmd_id, _iso(now_ts))
        self.stats.command_results += 1
        messages = [("cmd/result", json.dumps(result, separators=(",", ":")).encode())]
        if events:
            _, leaf, body = self._events(m, events)
            messages.append((leaf, body))
        return messages
