"""Arrears-risk backtest: the risk score (billing_bridge.risk) against a naive days-past-due ranking, on held-back
periods of a simulated population (billing_bridge.risk_backtest).

  python benchmarks/arrears_risk.py [--quick] [--accounts N] [--seed S]

A population of N accounts (default 20,000; --quick 2,000) of five payment habits is simulated over 30 monthly
bills from January 2024. The last six months with a full horizon after them are held back as cut-offs (the first of
November 2025 to April 2026): at each, every account is scored from what was known before it, and the outcome is
read 60 days later (at least 50 overdue, at least 30 days past due). Both rankings are judged by the ROC AUC and the
precision in the top decile, on all accounts and on those not yet in serious arrears at the cut-off (``new_``).
``auc_vs_baseline`` and ``precision_vs_baseline`` are the score's figure divided by the baseline's, measured in the
same run; ``scored_per_s`` is accounts scored (features from the raw history, then the score) per second.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from billing_bridge.risk_backtest import backtest, simulate_population

START = date(2024, 1, 1)
MONTHS = 30
CUTOFFS = [date(2025, 11, 1), date(2025, 12, 1), date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1),
           date(2026, 4, 1)]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 accounts (well within a minute)")
    parser.add_argument("--accounts", type=int, help="simulated accounts (default 20,000; --quick 2,000)")
    parser.add_argument("--seed", type=int, default=16)
    args = parser.parse_args(argv)
    n = args.accounts or (2_000 if args.quick else 20_000)
    t0 = time.perf_counter()
    population = simulate_population(n, MONTHS, seed=args.seed, start=START)
    t1 = time.perf_counter()
    r = backtest(population, CUTOFFS, seed=args.seed)
    t2 = time.perf_counter()
    kinds: dict[str, int] = {}
    for a in population:
        kinds[a.kind] = kinds.get(a.kind, 0) + 1
    print(f"population: {n} accounts ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}), simulated in"
          f" {t1 - t0:.1f} s; {r.cases} cases at {len(CUTOFFS)} cut-offs, {r.positives} in serious arrears after"
          f" 60 days")  # fmt: skip
    print(f"all cases: AUC {r.auc:.3f} (baseline {r.baseline_auc:.3f}), top-decile precision {r.precision_top10:.3f}"
          f" (baseline {r.baseline_precision_top10:.3f})")  # fmt: skip
    print(f"new cases ({r.new_cases}, {r.new_positives} positive): AUC {r.new_auc:.3f} (baseline"
          f" {r.new_baseline_auc:.3f}), top-decile precision {r.new_precision_top10:.3f} (baseline"
          f" {r.new_baseline_precision_top10:.3f})")  # fmt: skip
    print(
        f"RESULT arrears_risk accounts={n} cases={r.cases} positives={r.positives} auc={r.auc:.4f}"
        f" baseline_auc={r.baseline_auc:.4f} auc_vs_baseline={r.auc / r.baseline_auc:.3f}"
        f" precision_top10={r.precision_top10:.4f} baseline_precision_top10={r.baseline_precision_top10:.4f}"
        f" precision_vs_baseline={r.precision_top10 / r.baseline_precision_top10:.3f}"
        f" new_auc={r.new_auc:.4f} new_baseline_auc={r.new_baseline_auc:.4f}"
        f" new_precision_top10={r.new_precision_top10:.4f}"
        f" new_baseline_precision_top10={r.new_baseline_precision_top10:.4f}"
        f" scored_per_s={r.cases / (t2 - t1):.0f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
