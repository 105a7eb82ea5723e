"""A seeded, vectorized load model: 15-minute import and PV export energy for any number of meters.

Every meter is defined by its index and the model's seed alone (counter-based hashing, no sequential random state),
so any subset of meters over any slice of time gives the same numbers, however the request is chunked.

How the numbers are built, per meter ``m`` and local (standard-time) day ``d``:

- **Daily energy** ``base_m * (S_m(d) * W_m(d) + sigma_m * (u(m, d) - u(m, d-1)))``: ``S`` is a seasonal cosine
  (winter-peaking heating or summer-peaking cooling), ``W`` the weekday/weekend factor, ``u`` a seeded uniform.
  The noise term telescopes, so the cumulative energy since the reference day (2000-01-01) has a closed form.
- **Shape within the day**: a residential (morning and evening peaks) or commercial (business hours) profile, a
  weekend variant of each, a per-meter time shift, seeded per-interval noise and, for PV meters, a midday dip (the
  panels feed the house). The 96 fractions of each day sum to exactly one.
- **Registers**: a continuous cumulative energy ``R(t) = offset_m + C(d) + daily(d) * F(t)`` (``F`` interpolates the
  day's cumulative fractions). The register a meter shows is ``floor(R(t))`` in whole Wh, and an interval's energy is
  the difference of two registers, as in a real meter: intervals sum exactly to the register difference.
- **PV export** (``pv_share`` of the meters): daily yield ``kWp * share * (Y(d) + noise)`` with a seasonal yield
  ``Y`` (0.8 to 4.0 kWh/kWp/day), spread over the day by a solar-elevation curve between a seasonal sunrise and
  sunset (latitude about 50 degrees north, solar noon at 12:00 local standard time), with per-interval clouds. No
  export in an interval whose middle is before sunrise or after sunset.

Time is epoch seconds UTC; ``utc_offset_s`` places the meters' local standard time (no daylight saving: loads and
the sun follow standard time). Timestamps must be on or after 2000-01-01 local time.
"""

from __future__ import annotations

import math
from typing import overload

import numpy as np
import numpy.typing as npt

from amiflow.errors import ConfigError

__all__ = ["REFERENCE_TS", "LoadModel"]

REFERENCE_TS = 946_684_800  # 2000-01-01T00:00:00Z: registers count from here (plus a seeded offset)
_REF_DAY = REFERENCE_TS // 86_400
_SLOTS = 96
_SLOT_S = 900
_YEAR_D = 365.2425
_OMEGA = 2.0 * math.pi / _YEAR_D
_SOLSTICE_DAY = _REF_DAY + 171  # 2000-06-20
_WINTER_PEAK_DAY = _REF_DAY + 15
_SUMMER_PEAK_DAY = _REF_DAY + 200
_BLOCK = 8192  # meters per block: bounds the (meters x days x 96) work arrays to a few tens of MB

_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)
_M1 = _U64(0xBF58476D1CE4E5B9)
_M2 = _U64(0x94D049BB133111EB)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def _mix(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64 finalizer (in place on a fresh array): a well-spread 64-bit hash of each element."""
    x ^= x >> _U64(30)
    x *= _M1
    x ^= x >> _U64(27)
    x *= _M2
    x ^= x >> _U64(31)
    return x


def _unit(h: npt.NDArray[np.uint64]) -> FloatArray:
    """Uniform [0, 1) from hashes (53 bits)."""
    return (h >> _U64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def _bump(hour: FloatArray, center: float, width: float) -> FloatArray:
    result: FloatArray = np.exp(-0.5 * ((hour - center) / width) ** 2)
    return result


def _plateau(hour: FloatArray, start: float, end: float, edge: float = 0.6) -> FloatArray:
    rise: FloatArray = 1.0 / (1.0 + np.exp(-(hour - start) / (edge / 4)))
    fall: FloatArray = 1.0 / (1.0 + np.exp((hour - end) / (edge / 4)))
    return rise * fall


def _base_shapes() -> FloatArray:
    """Rows: residential weekday, residential weekend, commercial weekday, commercial weekend (96 slot means)."""
    h: FloatArray = (np.arange(_SLOTS, dtype=np.float64) + 0.5) / 4.0
    res_wd = 0.28 + 0.55 * _bump(h, 7.25, 0.9) + 0.25 * _bump(h, 13.0, 2.0) + 1.0 * _bump(h, 19.5, 1.7)
    res_we = 0.28 + 0.45 * _bump(h, 9.5, 1.5) + 0.45 * _bump(h, 13.5, 2.5) + 0.9 * _bump(h, 19.0, 1.9)
    com_wd = 0.22 + 1.0 * _plateau(h, 7.5, 18.0) + 0.1 * _bump(h, 12.5, 1.0)
    com_we = 0.30 + 0.25 * _plateau(h, 9.0, 14.0)
    return np.stack([res_wd, res_we, com_wd, com_we])


_SHAPES = _base_shapes()
_SLOT_MID_H = (np.arange(_SLOTS) + 0.5) / 4.0


def _cos_sum(alpha: FloatArray, beta: float, n: FloatArray) -> FloatArray:
    """``sum_{k=0}^{n-1} cos(alpha + k * beta)`` in closed form (``n`` >= 0, ``beta`` not a multiple of 2 pi)."""
    half = 0.5 * beta
    return np.sin(n * half) / math.sin(half) * np.cos(alpha + (n - 1.0) * half)


def _weekday(day: IntArray) -> IntArray:
    return (day + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0


class LoadModel:
    """Seeded import/export energy of meters ``0, 1, 2, ...``: see the module docstring for the model.

    ``pv_share`` and ``commercial_share`` are the fractions of meters with PV and of commercial meters.
    """

    def __init__(
        self, seed: int, *, pv_share: float = 0.2, commercial_share: float = 0.2, utc_offset_s: int = 0
    ) -> None:
        for name, share in (("pv_share", pv_share), ("commercial_share", commercial_share)):
            if not 0.0 <= share <= 1.0:
                raise ConfigError(f"load model {name}={share}: must be between 0 and 1")
        if not -14 * 3600 <= utc_offset_s <= 14 * 3600:
            raise ConfigError(f"load model utc_offset_s={utc_offset_s}: must be within +-14 hours")
        self.seed = int(seed)
        self.pv_share = float(pv_share)
        self.commercial_share = float(commercial_share)
        self.utc_offset_s = int(utc_offset_s)
        with np.errstate(over="ignore"):
            self._key = _mix(np.array([self.seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64) ^ _GOLDEN)[0]

    # -- hashing ------------------------------------------------------------------------------------------------

    def _h(self, salt: int, *keys: npt.ArrayLike) -> npt.NDArray[np.uint64]:
        """Hash of (seed, salt, keys...) with broadcasting."""
        h = np.asarray(self._key ^ _U64(salt * 0x632BE59BD9B4E019 & 0xFFFFFFFFFFFFFFFF), dtype=np.uint64)
        with np.errstate(over="ignore"):  # wrapping uint64 arithmetic is the point (0-d arrays would warn)
            for k in keys:
                h = _mix(h + np.asarray(k).astype(np.uint64) * _GOLDEN)
        return h

    def _u(self, salt: int, *keys: npt.ArrayLike) -> FloatArray:
        return _unit(self._h(salt, *keys))

    # -- per-meter parameters -----------------------------------------------------------------------------------

    def _params(self, m: IntArray) -> dict[str, FloatArray]:
        com = self._u(1, m) < self.commercial_share
        pv = self._u(2, m) < self.pv_share
        # lognormal daily energy from a Box-Muller normal
        z = np.sqrt(-2.0 * np.log1p(-self._u(3, m))) * np.cos(2.0 * math.pi * self._u(4, m))
        base = np.where(com, np.clip(110_000.0 * np.exp(0.8 * z), 15_000.0, 1_500_000.0), 9_500.0 * np.exp(0.42 * z))
        base = np.where(com, base, np.clip(base, 2_500.0, 40_000.0))
        summer = self._u(5, m) < np.where(com, 0.6, 0.3)
        amp = np.where(com, 0.05 + 0.15 * self._u(6, m), 0.10 + 0.25 * self._u(6, m))
        peak = np.where(summer, float(_SUMMER_PEAK_DAY), float(_WINTER_PEAK_DAY))
        weekend = np.where(com, 0.25 + 0.35 * self._u(7, m), 1.05 + 0.15 * self._u(7, m))
        sigma = np.where(com, 0.05 + 0.07 * self._u(8, m), 0.12 + 0.12 * self._u(8, m))
        shift = np.floor(self._u(9, m) * 9.0) - 4.0
        shape_noise = np.where(com, 0.2, 0.6)
        kwp = np.where(com, 20.0 + 130.0 * self._u(10, m), 3.0 + 6.0 * self._u(10, m))
        pv_share = 0.5 + 0.3 * self._u(11, m)
        return {
            "com": com.astype(np.float64),
            "pv": pv.astype(np.float64),
            "base": base,
            "amp": amp,
            "peak": peak,
            "weekend": weekend,
            "sigma": sigma,
            "shift": shift,
            "shape_noise": shape_noise,
            "pv_wh": np.where(pv, kwp * 1000.0 * pv_share, 0.0),
            "offset": np.floor(self._u(12, m) * 3_000_000.0),
            "export_offset": np.where(pv, np.floor(self._u(13, m) * 500_000.0), 0.0),
        }

    # -- daily totals and their closed-form cumulative ---------------------------------------------------------

    def _import_daily(self, p: dict[str, FloatArray], m: IntArray, d: IntArray) -> FloatArray:
        """Import Wh of local days ``d`` (meters x days)."""
        season = 1.0 + p["amp"][:, None] * np.cos(_OMEGA * (d[None, :] - p["peak"][:, None]))
        wkd = np.where(_weekday(d)[None, :] >= 5, p["weekend"][:, None], 1.0)
        noise = self._u(20, m[:, None], d[None, :]) - self._u(20, m[:, None], d[None, :] - 1)
        result: FloatArray = p["base"][:, None] * (season * wkd + p["sigma"][:, None] * noise)
        return result

    def _import_cum(self, p: dict[str, FloatArray], m: IntArray, d: IntArray) -> FloatArray:
        """Import Wh of the local days from the reference day up to, not including, ``d``."""
        total = np.zeros((m.size, d.size))
        for wd in range(7):
            first = _REF_DAY + (wd - (_REF_DAY + 3)) % 7
            n = np.maximum(0, (d - first + 6) // 7).astype(np.float64)  # days of this weekday in [ref, d)
            alpha = _OMEGA * (first - p["peak"][:, None])
            factor = p["weekend"][:, None] if wd >= 5 else 1.0
            total += factor * (n[None, :] + p["amp"][:, None] * _cos_sum(alpha, 7.0 * _OMEGA, n[None, :]))
        noise = self._u(20, m[:, None], d[None, :] - 1) - self._u(20, m[:, None], np.int64(_REF_DAY - 1))
        result: FloatArray = p["base"][:, None] * (total + p["sigma"][:, None] * noise)
        return result

    def _export_daily(self, p: dict[str, FloatArray], m: IntArray, d: IntArray) -> FloatArray:
        season = 2.4 + 1.6 * np.cos(_OMEGA * (d - _SOLSTICE_DAY))
        noise = self._u(30, m[:, None], d[None, :]) - self._u(30, m[:, None], d[None, :] - 1)
        result: FloatArray = p["pv_wh"][:, None] * (season[None, :] + 0.7 * noise)
        return result

    def _export_cum(self, p: dict[str, FloatArray], m: IntArray, d: IntArray) -> FloatArray:
        n = (d - _REF_DAY).astype(np.float64)
        yearly = 2.4 * n + 1.6 * _cos_sum(np.full(n.shape, _OMEGA * (_REF_DAY - _SOLSTICE_DAY)), _OMEGA, n)
        noise = self._u(30, m[:, None], d[None, :] - 1) - self._u(30, m[:, None], np.int64(_REF_DAY - 1))
        result: FloatArray = p["pv_wh"][:, None] * (yearly[None, :] + 0.7 * noise)
        return result

    # -- shapes within the day ------------------------------------------------------------------------------------

    @staticmethod
    def _solar(d: IntArray) -> FloatArray:
        """Relative solar power at the middle of each slot (days x 96), zero between sunset and sunrise."""
        s = np.cos(_OMEGA * (d - _SOLSTICE_DAY))[:, None]
        half_day_h = 6.0 + 2.25 * s
        phase = (_SLOT_MID_H[None, :] - (12.0 - half_day_h)) / (2.0 * half_day_h)
        elevation = np.where((phase > 0.0) & (phase < 1.0), np.sin(math.pi * np.clip(phase, 0.0, 1.0)), 0.0)
        result: FloatArray = elevation**1.3 * (0.55 + 0.45 * s)
        return result

    def _import_fractions(self, p: dict[str, FloatArray], m: IntArray, d: IntArray) -> FloatArray:
        """Each day's share of import per slot (meters x days x 96), rows summing to 1."""
        row = (2 * p["com"][:, None] + (_weekday(d)[None, :] >= 5)).astype(np.int64)
        slots = (np.arange(_SLOTS)[None, :] - p["shift"][:, None].astype(np.int64)) % _SLOTS
        shape = _SHAPES[row[:, :, None], slots[:, None, :]]
        u = self._slot_uniform(40, m, d)
        shape *= 1.0 + p["shape_noise"][:, None, None] * (u - 0.5)
        shape *= 1.0 - 0.6 * p["pv"][:, None, None] * self._solar(d)[None, :, :]
        shape /= shape.sum(axis=-1, keepdims=True)
        return shape

    def _export_fractions(self, m: IntArray, d: IntArray) -> FloatArray:
        clouds = self._u(50, m[:, None], d[None, :])[:, :, None]  # 0 clear .. 1 broken cloud
        shape = self._solar(d)[None, :, :] * (1.0 - 0.8 * clouds * self._slot_uniform(51, m, d))
        total = shape.sum(axis=-1, keepdims=True)
        result: FloatArray = shape / np.where(total > 0.0, total, 1.0)
        return result

    def _slot_uniform(self, salt: int, m: IntArray, d: IntArray) -> FloatArray:
        h = self._h(salt, m[:, None], d[None, :])[:, :, None] + (np.arange(_SLOTS, dtype=np.uint64) * _GOLDEN)
        h ^= h >> _U64(32)
        h *= _M2
        h ^= h >> _U64(29)
        return _unit(h)

    # -- cumulative energy R(t) -----------------------------------------------------------------------------------

    def _cumulative(self, m: IntArray, ts: IntArray, export: bool) -> FloatArray:
        """floor(R) at each of the sorted, unique ``ts`` for the meters ``m`` (meters x len(ts)), whole Wh."""
        local = ts + self.utc_offset_s
        if local.size and int(local.min()) < REFERENCE_TS:
            raise ConfigError("load model: timestamps must be on or after 2000-01-01 (local time)")
        day = (local - 1) // 86_400  # a midnight belongs to the day it ends: position 96 of the previous day
        pos = (local - day * 86_400) / _SLOT_S  # (0, 96]
        slot = np.ceil(pos).astype(np.int64) - 1
        frac = pos - slot
        udays, day_idx = np.unique(day, return_inverse=True)
        sel = np.flatnonzero(pos < _SLOTS)
        partial_days = np.unique(day[sel])
        flat = np.searchsorted(partial_days, day[sel]) * _SLOTS + slot[sel]  # into (days x 96) flattened
        out = np.empty((m.size, ts.size))
        for lo in range(0, m.size, _BLOCK):
            mb = m[lo : lo + _BLOCK]
            p = self._params(mb)
            if export:
                cum, daily = self._export_cum(p, mb, udays), self._export_daily(p, mb, udays)
                offset = p["export_offset"]
            else:
                cum, daily = self._import_cum(p, mb, udays), self._import_daily(p, mb, udays)
                offset = p["offset"]
            within = np.ones((mb.size, ts.size))
            if sel.size:
                fr = self._export_fractions(mb, partial_days) if export else self._import_fractions(p, mb, partial_days)
                fr = fr.reshape(mb.size, -1)
                before = np.cumsum(fr.reshape(mb.size, -1, _SLOTS), axis=-1).reshape(mb.size, -1) - fr
                within[:, sel] = np.take(before, flat, axis=1) + frac[sel] * np.take(fr, flat, axis=1)
            reg = offset[:, None] + np.take(cum, day_idx, axis=1) + np.take(daily, day_idx, axis=1) * within
            out[lo : lo + _BLOCK] = np.floor(reg)
        return out

    def _intervals(
        self, meter_index: int | npt.ArrayLike, ts_end: npt.ArrayLike, interval_s: int, export: bool
    ) -> FloatArray:
        if interval_s <= 0:
            raise ConfigError(f"load model interval_s={interval_s}: must be positive")
        m, scalar = self._meters(meter_index)
        end = np.asarray(ts_end, dtype=np.int64).reshape(-1)
        bounds, inverse = np.unique(np.concatenate([end - interval_s, end]), return_inverse=True)
        reg = self._cumulative(m, bounds, export)
        run = np.arange(end.size + 1)
        if bounds.size == end.size + 1 and np.array_equal(inverse, np.concatenate([run[:-1], run[1:]])):
            result: FloatArray = np.diff(reg, axis=1)  # contiguous intervals in order: no gather
        else:
            result = np.take(reg, inverse[end.size :], axis=1) - np.take(reg, inverse[: end.size], axis=1)
        return self._shape(result, scalar, np.ndim(ts_end) == 0)

    def _registers(self, meter_index: int | npt.ArrayLike, ts: npt.ArrayLike, export: bool) -> FloatArray:
        m, scalar = self._meters(meter_index)
        t = np.asarray(ts, dtype=np.int64).reshape(-1)
        bounds, inverse = np.unique(t, return_inverse=True)
        result = self._cumulative(m, bounds, export)
        if not np.array_equal(inverse, np.arange(t.size)):
            result = np.take(result, inverse, axis=1)
        return self._shape(result, scalar, np.ndim(ts) == 0)

    @staticmethod
    def _shape(result: FloatArray, one_meter: bool, one_time: bool) -> FloatArray:
        """Drop the meter axis for a scalar meter and the time axis for a scalar time."""
        if one_time:
            result = result[:, 0]
        return result[0] if one_meter else result

    @staticmethod
    def _meters(meter_index: int | npt.ArrayLike) -> tuple[IntArray, bool]:
        scalar = np.ndim(meter_index) == 0
        m = np.asarray(meter_index, dtype=np.int64).reshape(-1)
        if m.size and int(m.min()) < 0:
            raise ConfigError("load model: meter indexes must be >= 0")
        return m, scalar

    # -- public ---------------------------------------------------------------------------------------------------

    def interval_energy_wh(
        self, meter_index: int | npt.ArrayLike, ts_end: npt.ArrayLike, *, interval_s: int = _SLOT_S
    ) -> FloatArray:
        """Import Wh (whole) of the intervals ending at ``ts_end``: (meters, intervals).

        A scalar meter drops the first axis, a scalar ``ts_end`` the second.
        """
        return self._intervals(meter_index, ts_end, interval_s, export=False)

    def export_energy_wh(
        self, meter_index: int | npt.ArrayLike, ts_end: npt.ArrayLike, *, interval_s: int = _SLOT_S
    ) -> FloatArray:
        """Export Wh of the intervals ending at ``ts_end`` (zero for meters without PV); same shapes."""
        return self._intervals(meter_index, ts_end, interval_s, export=True)

    def register_wh(self, meter_index: int | npt.ArrayLike, ts: npt.ArrayLike) -> FloatArray:
        """The cumulative import register (whole Wh) at ``ts``: a seeded offset plus all import since 2000-01-01."""
        return self._registers(meter_index, ts, export=False)

    def export_register_wh(self, meter_index: int | npt.ArrayLike, ts: npt.ArrayLike) -> FloatArray:
        """The cumulative export register (whole Wh) at ``ts``; constant zero for meters without PV."""
        return self._registers(meter_index, ts, export=True)

    @overload
    def kind(self, meter_index: int) -> str: ...
    @overload
    def kind(self, meter_index: npt.ArrayLike) -> str | npt.NDArray[np.str_]: ...
    def kind(self, meter_index: int | npt.ArrayLike) -> str | npt.NDArray[np.str_]:
        """``"residential"`` or ``"commercial"`` (an array of them for an array of meters)."""
        m, scalar = self._meters(meter_index)
        kinds = np.where(self._u(1, m) < self.commercial_share, "commercial", "residential")
        return str(kinds[0]) if scalar else kinds

    def has_pv(self, meter_index: int | npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Whether each meter has PV (exports); a 0-d array for one meter (usable as a bool)."""
        m, scalar = self._meters(meter_index)
        pv: npt.NDArray[np.bool_] = self._u(2, m) < self.pv_share
        return pv.reshape(()) if scalar else pv

    def sunlit(self, ts_mid: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Whether the sun is up (in the model) at each instant: export happens only in intervals whose middle is."""
        t = np.asarray(ts_mid, dtype=np.int64) + self.utc_offset_s
        day = t // 86_400
        hour = (t - day * 86_400) / 3600.0
        half_day_h = 6.0 + 2.25 * np.cos(_OMEGA * (day - _SOLSTICE_DAY))
        result: npt.NDArray[np.bool_] = np.abs(hour - 12.0) < half_day_h
        return result
