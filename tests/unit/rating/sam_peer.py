"""NREL SAM (PySAM ``Utilityrate5``, BSD-3, a test-only peer) and amiflow on the same tariff and load: a year of
monthly bills by charge category.

SAM's calendar is a 365-day year starting on a Monday without holidays (ssc ``util::translate_schedule``), so the
amiflow side rates 2018 (Monday 1 January, not a leap year) in UTC with no holiday calendar. The load is 15-minute
kW (SAM's ``load``, one value per time step); amiflow gets the same as Wh per interval (kW x 250), so SAM's
time-step peak is amiflow's 15-minute block demand. SAM computes in binary floats and does not round; amiflow rounds
every line once to the cent (docs/rating.md), so a category of n lines may differ by up to n x 0.005.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pytest

from rating.compile import compile_tariff
from rating.engine import rate_block
from rating.tariff import DemandSpec, TariffSpec

from .conftest import axis_ts

ur = pytest.importorskip("PySAM.Utilityrate5", reason="NREL-PySAM is the SAM peer (pip install -e '.[test]')")

YEAR = 2018
STEPS = 8760 * 4
MONTHS = [date(YEAR, m, 1) for m in range(1, 13)] + [date(YEAR + 1, 1, 1)]
_INF = 1e38  # SAM's "no upper bound"


@dataclass(frozen=True)
class Monthly:
    """Per month (12): charges by category ($) and the billed (ratcheted) flat demand (kW)."""

    energy: np.ndarray
    fixed: np.ndarray
    flat_demand: np.ndarray
    tou_demand: np.ndarray
    billing_kw: np.ndarray


def _matrix(m: list[list[int]] | None, fallback: list[list[int]]) -> list[list[int]]:
    return [[v + 1 for v in row] for row in (m if m is not None else fallback)]


def _energy(spec: TariffSpec) -> dict[str, Any]:
    tou = spec.tou
    assert tou.weekday is not None, "the SAM peer needs TOU matrices"
    units = 0 if spec.energy.tier_basis == "month" else 2  # kWh | kWh daily
    rows = []
    for p, name in enumerate(tou.periods):
        limits = [float(x) for x in spec.energy.limits_of(name)] + [_INF]
        rates = spec.energy.rates[name]
        for k, limit in enumerate(limits):
            rows.append([p + 1, k + 1, limit, units, float(rates[min(k, len(rates) - 1)]), 0.0])
    return {
        "ur_ec_sched_weekday": _matrix(tou.weekday, tou.weekday),
        "ur_ec_sched_weekend": _matrix(tou.weekend, tou.weekday),
        "ur_ec_tou_mat": rows,
    }


def _tiers(d: DemandSpec, name: str) -> list[tuple[int, float, float]]:
    limits = [float(x) for x in d.tier_limits_kw] + [_INF]
    rates = d.rates.get(name, [0])
    return [(k + 1, limit, float(rates[min(k, len(rates) - 1)])) for k, limit in enumerate(limits)]


def _demand(spec: TariffSpec) -> dict[str, Any]:
    flat = [d for d in spec.demand if d.tou is None or d.ratcheted]
    tou = [d for d in spec.demand if d not in flat]
    flat_rows: list[list[float]] = []
    for d in flat:
        for month in range(12):
            name = "all" if d.tou is None else d.tou.periods[d.tou.weekday[month][0]]  # type: ignore[index, union-attr]
            flat_rows += [[month, k, limit, rate] for k, limit, rate in _tiers(d, name)]
    always = [[1] * 24 for _ in range(12)]
    out: dict[str, Any] = {"ur_dc_enable": 1, "ur_dc_flat_mat": flat_rows or [[m, 1, _INF, 0.0] for m in range(12)]}
    if tou:
        (d,) = tou
        assert not isinstance(d.tou, str) and d.tou is not None and d.tou.weekday is not None
        out["ur_dc_sched_weekday"] = _matrix(d.tou.weekday, d.tou.weekday)
        out["ur_dc_sched_weekend"] = _matrix(d.tou.weekend, d.tou.weekday)
        out["ur_dc_tou_mat"] = [[p + 1, k, lim, r] for p, n in enumerate(d.tou.periods) for k, lim, r in _tiers(d, n)]
    else:
        out.update(ur_dc_sched_weekday=always, ur_dc_sched_weekend=always, ur_dc_tou_mat=[[1, 1, _INF, 0.0]])
    ratchet = next((d for d in flat if d.ratcheted), None)
    if ratchet is not None:
        pct: list[Any] = ratchet.ratchet_pct_by_month or [ratchet.ratchet_pct] * 12
        out.update(
            ur_enable_billing_demand=1, ur_billing_demand_minimum=0,
            ur_billing_demand_lookback_period=ratchet.ratchet_months,
            ur_billing_demand_lookback_percentages=[[float(p or 0), 1] for p in pct],  # col 1: this month's peak too
            ur_dc_billing_demand_periods=[[1, 1]],  # SAM wants one; the TOU rows here charge 0
            ur_yearzero_usage_peaks=[0.0] * 12,  # a new customer: no peaks before January
        )  # fmt: skip
    return out


def sam_monthly(spec: TariffSpec, load_kw: np.ndarray) -> Monthly:
    """SAM's twelve monthly bills of ``load_kw`` (STEPS values) on ``spec``."""
    m = ur.new()
    inputs: dict[str, Any] = {
        "analysis_period": 1, "system_use_lifetime_output": 0, "inflation_rate": 0, "degradation": [0],
        "load_escalation": [0], "rate_escalation": [0], "gen": [0.0] * STEPS, "load": [float(v) for v in load_kw],
        "ur_metering_option": 0, "ur_nm_yearend_sell_rate": 0, "ur_en_ts_sell_rate": 0, "ur_en_ts_buy_rate": 0,
        "ur_monthly_fixed_charge": float(sum(f.amount for f in spec.fixed if f.per == "month")),
        "ur_monthly_min_charge": 0, "ur_annual_min_charge": 0,
        **_energy(spec), **(_demand(spec) if spec.demand else {"ur_dc_enable": 0}),
    }  # fmt: skip
    for key, value in inputs.items():
        m.value(key, value)
    m.execute()
    o = m.Outputs

    def year1(name: str) -> np.ndarray:
        return np.asarray(np.array(getattr(o, name))[1], dtype=np.float64)

    return Monthly(
        year1("charge_w_sys_ec_ym"), year1("charge_w_sys_fixed_ym"), year1("charge_w_sys_dc_fixed_ym"),
        year1("charge_w_sys_dc_tou_ym"), year1("billing_demand_w_sys_ym") if spec.demand else np.zeros(12),
    )  # fmt: skip


def amiflow_monthly(spec: TariffSpec, load_kw: np.ndarray) -> tuple[Monthly, list[int]]:
    """amiflow's twelve bills, each month's ratchet fed the earlier months' peaks as the billing run does; also the
    number of lines per category (energy, fixed, flat demand, TOU demand) of the year, for the rounding bound."""
    tariff = compile_tariff(spec)
    ts = axis_ts(MONTHS[0], MONTHS[-1])
    wh = (np.asarray(load_kw) * 250.0)[None, :]
    flat_codes = {d.code for d in spec.demand if d.tou is None or d.ratcheted}
    cols = {k: np.zeros(12) for k in ("energy", "fixed", "flat", "tou", "kw")}
    counts = dict.fromkeys(("energy", "fixed", "flat", "tou"), 0)
    peaks: dict[str, list[float]] = {d.code: [] for d in spec.demand if d.ratcheted}
    for k in range(12):
        prior = {c: np.array([v or np.nan for v in p])[None, :] for c, p in peaks.items() if p}
        b = rate_block(tariff, ts, wh, tz="UTC", period_start=MONTHS[k], period_end=MONTHS[k + 1], prior_peak_w=prior)
        for col, line in enumerate(b.lines):
            code = line.code.split(".")[0]
            key = {"energy": "energy", "fixed": "fixed"}.get(line.category, "flat" if code in flat_codes else "tou")
            cols[key][k] += int(b.amount_minor[0, col]) / 100
            counts[key] += 1
        for c in peaks:
            peaks[c].append(float(b.determinants[f"peak_kw.{c}.all"][0]))
            billed = [v for n, v in b.determinants.items() if n.startswith(f"billed_kw.{c}.")]
            cols["kw"][k] = max(int(v[0]) for v in billed) / 1000
    return Monthly(cols["energy"], cols["fixed"], cols["flat"], cols["tou"], cols["kw"]), list(counts.values())


def assert_same_bills(spec: TariffSpec, load_kw: np.ndarray) -> Monthly:
    """Every month's charges within amiflow's rounding bound of SAM's; returns amiflow's."""
    sam = sam_monthly(spec, load_kw)
    ours, counts = amiflow_monthly(spec, load_kw)
    for name, n in zip(("energy", "fixed", "flat_demand", "tou_demand"), counts, strict=True):
        bound = 0.005 * max(n / 12, 1) + 1e-6  # lines per month of the category, half a cent each
        np.testing.assert_allclose(getattr(ours, name), getattr(sam, name), rtol=0, atol=bound, err_msg=name)
    if any(d.ratcheted for d in spec.demand):
        np.testing.assert_allclose(ours.billing_kw, sam.billing_kw, rtol=0, atol=0.0006, err_msg="billing demand")
    return ours
