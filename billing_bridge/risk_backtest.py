"""A backtest of the arrears-risk score (:mod:`billing_bridge.risk`) on a simulated population of billing accounts.

**Population.** Each account has a monthly bill (its consumption with a winter/summer swing, times a flat rate plus
a fixed charge) due ``terms_days`` after issue, and pays by a habit drawn once: *prompt* (55 %: pays in full around
the due date, now and then a little late), *late* (20 %: pays in full, usually one to four weeks late), *partial*
(12 %: pays part by the due date, the rest a month or more later, sometimes skips a bill), *shock* (8 %: prompt
until a month when income fails; from a month or two before it pays late and partly, then stops) and *seasonal*
(5 %: falls behind on the large winter bills, catches up in summer). Partial, shock and seasonal accounts tend to
use more energy than a year before (a rising bill is part of how arrears start); the others drift either way.

**Backtest.** At each cut-off date (held-back periods at the end of the simulation, after a year of history) every
account is scored from what was known before the cut-off only (bills issued, payments made, consumption), with the
same features, caps and weights as production (:func:`billing_bridge.risk.features_for`, :func:`score`). The outcome
is read ``horizon_days`` later: *serious arrears* = at least ``min_debt`` overdue and at least ``serious_days`` past
due. The baseline ranks by days past due at the cut-off alone. Both rankings are judged by the ROC AUC (ties count
half) and by the precision in the top decile (ties broken at random with the seed), on all accounts and on the
accounts that were not in serious arrears at the cut-off (the new cases, where knowing "already overdue" helps
least).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from billing_bridge.arrears import Debt, Payment, compute_arrears, payment_history
from billing_bridge.risk import features_for, score

__all__ = ["BacktestResult", "SimAccount", "auc", "backtest", "precision_at_top", "simulate_population"]

KINDS = ("prompt", "late", "partial", "shock", "seasonal")
SHARES = (0.55, 0.20, 0.12, 0.08, 0.05)
_RATE, _FIXED = 0.21, 12.0


@dataclass(frozen=True, slots=True)
class SimAccount:
    """One simulated account: its bills, its payments and its consumption per month (index 0 = ``start``)."""

    account: str
    kind: str
    debts: tuple[Debt, ...]
    payments: tuple[Payment, ...]
    monthly_kwh: tuple[float, ...]
    start: date


def _month(start: date, k: int) -> date:
    i = start.year * 12 + start.month - 1 + k
    return date(i // 12, i % 12 + 1, 1)


def _at(day: date) -> datetime:
    return datetime.combine(day, time(12), UTC)


def _pays(kind: str, k: int, shock: int, winter: bool, rng: np.random.Generator) -> list[tuple[int, float]]:
    """(days after the due date, share of the bill) of the payments of bill ``k``."""
    if kind == "prompt":
        return [(int(rng.integers(8, 25)) if rng.random() < 0.05 else int(rng.integers(-12, 1)), 1.0)]
    if kind == "late":
        return [(int(rng.integers(5, 30)) if rng.random() < 0.75 else int(rng.integers(-5, 1)), 1.0)]
    if kind == "partial":
        if rng.random() < 0.2:
            return [(int(rng.integers(50, 80)), 1.0)]  # skipped, paid with a later bill
        part = float(rng.uniform(0.3, 0.8))
        return [(int(rng.integers(-5, 3)), part), (int(rng.integers(25, 50)), 1.0 - part)]
    if kind == "shock":
        if k >= shock:
            return [(int(rng.integers(0, 60)), 0.1)] if rng.random() < 0.3 else []
        if k >= shock - 2:
            return [(int(rng.integers(10, 30)), float(rng.uniform(0.3, 0.7)))]
        return [(int(rng.integers(-10, 1)), 1.0)]
    if winter:  # seasonal
        part = float(rng.uniform(0.2, 0.6))
        return [(int(rng.integers(0, 15)), part), (int(rng.integers(90, 150)), 1.0 - part)]
    return [(int(rng.integers(-10, 3)), 1.0)]


def simulate_population(
    n: int, months: int, *, seed: int, start: date = date(2024, 1, 1), terms_days: int = 21
) -> list[SimAccount]:
    """``n`` accounts over ``months`` monthly bills from ``start`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    kinds = rng.choice(len(KINDS), size=n, p=SHARES)
    out = []
    for i in range(n):
        kind = KINDS[int(kinds[i])]
        base = float(rng.lognormal(np.log(550.0), 0.35))
        stressed = kind in ("partial", "shock", "seasonal")
        growth = float(rng.uniform(0.15, 0.6)) if stressed and rng.random() < 0.7 else float(rng.normal(0.0, 0.08))
        shock = int(rng.integers(12, months)) if kind == "shock" else months
        kwh, debts, pays = [], [], []
        for k in range(months):
            month = _month(start, k)
            winter = month.month in (12, 1, 2, 3)
            year_factor = 1.0 + growth * min(max(k - 6, 0) / 12.0, 1.0)
            use = base * (1.35 if winter else 0.9) * year_factor * float(rng.normal(1.0, 0.06))
            kwh.append(use)
            amount = Decimal(str(round(use * _RATE + _FIXED, 2)))
            due = _month(start, k + 1) + timedelta(days=terms_days)
            debts.append(Debt(f"S{i:06d}", f"bill:{i}:{k}", amount, due))
            for offset, share in _pays(kind, k, shock, winter, rng):
                paid = (amount * Decimal(str(round(share, 4)))).quantize(Decimal("0.01"))
                if paid > 0:
                    pays.append(Payment(f"S{i:06d}", paid, _at(due + timedelta(days=offset))))
        out.append(SimAccount(f"S{i:06d}", kind, tuple(debts), tuple(pays), tuple(kwh), start))
    return out


def _known(a: SimAccount, day: date, terms_days: int) -> tuple[list[Debt], list[Payment]]:
    debts = [d for d in a.debts if d.due_date - timedelta(days=terms_days) < day]
    return debts, [p for p in a.payments if p.paid_at < _at(day) - timedelta(hours=12)]


def _consumption_change(a: SimAccount, day: date) -> float | None:
    k = (day.year - a.start.year) * 12 + day.month - a.start.month  # months fully before ``day``: 0..k-1
    if k < 15:
        return None
    now, then = sum(a.monthly_kwh[k - 3 : k]), sum(a.monthly_kwh[k - 15 : k - 12])
    return now / then - 1.0 if then > 0 else None


def _case(a: SimAccount, day: date, terms_days: int) -> tuple[float, int]:
    """(risk score, days past due) of ``a`` from what was known on ``day``."""
    debts, pays = _known(a, day, terms_days)
    arrears = compute_arrears(debts, pays, day).get(a.account)
    history = payment_history(debts, pays)
    recent = sorted(h.debt.amount for h in history if h.debt.due_date >= day - timedelta(days=365))
    typical = recent[len(recent) // 2] if recent else None
    f = features_for(arrears, history, typical, day, _consumption_change(a, day))
    return score(a.account, f).score, arrears.days_past_due if arrears else 0


def _serious(a: SimAccount, day: date, terms_days: int, min_debt: Decimal, serious_days: int) -> bool:
    debts, pays = _known(a, day, terms_days)
    arrears = compute_arrears(debts, pays, day).get(a.account)
    return arrears is not None and arrears.overdue_amount >= min_debt and arrears.days_past_due >= serious_days


def auc(scores: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """The ROC AUC (Mann-Whitney with average ranks: ties count half); NaN without both classes."""
    s, y = np.asarray(scores, dtype=float), np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not n_pos or not n_neg:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ends = np.r_[starts[1:], len(s)]
    for lo, hi in zip(starts, ends, strict=True):
        ranks[order[lo:hi]] = (lo + hi + 1) / 2.0  # average of the 1-based ranks lo+1..hi
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def precision_at_top(scores: npt.ArrayLike, labels: npt.ArrayLike, share: float, *, seed: int) -> float:
    """The share of positives among the top ``share`` of ``scores`` (ties broken at random with ``seed``)."""
    s, y = np.asarray(scores, dtype=float), np.asarray(labels, dtype=bool)
    k = max(1, round(len(s) * share))
    jitter = np.random.default_rng(seed).random(len(s))
    top = np.lexsort((jitter, -s))[:k]
    return float(y[top].mean())


@dataclass(frozen=True, slots=True)
class BacktestResult:
    """The score against the days-past-due baseline, on all cases and on the new ones."""

    cases: int
    positives: int
    auc: float
    baseline_auc: float
    precision_top10: float
    baseline_precision_top10: float
    new_cases: int
    new_positives: int
    new_auc: float
    new_baseline_auc: float
    new_precision_top10: float
    new_baseline_precision_top10: float


def backtest(
    population: Sequence[SimAccount],
    cutoffs: Sequence[date],
    *,
    horizon_days: int = 60,
    terms_days: int = 21,
    min_debt: Decimal = Decimal("50"),
    serious_days: int = 30,
    seed: int = 0,
) -> BacktestResult:
    """Score every account at every cut-off and compare with the outcome ``horizon_days`` later."""
    scores, dpd, label, already = [], [], [], []
    for day in cutoffs:
        later = day + timedelta(days=horizon_days)
        for a in population:
            risk, days = _case(a, day, terms_days)
            scores.append(risk)
            dpd.append(days)
            label.append(_serious(a, later, terms_days, min_debt, serious_days))
            already.append(_serious(a, day, terms_days, min_debt, serious_days))
    s, b, y, new = np.array(scores), np.array(dpd, dtype=float), np.array(label), ~np.array(already)
    return BacktestResult(
        len(s), int(y.sum()), auc(s, y), auc(b, y), precision_at_top(s, y, 0.1, seed=seed),
        precision_at_top(b, y, 0.1, seed=seed), int(new.sum()), int(y[new].sum()), auc(s[new], y[new]),
        auc(b[new], y[new]), precision_at_top(s[new], y[new], 0.1, seed=seed),
        precision_at_top(b[new], y[new], 0.1, seed=seed),
    )  # fmt: skip
