"""Rating benchmark: the vectorized engine vs a straightforward per-meter Python implementation of the same tariff.

  python benchmarks/rating.py [--quick] [--meters N] [--sample S]

(a) Rates N meter-months (default 100,000; --quick 10,000) of 15-minute data (January 2024, America/Chicago, 2976
intervals) on a TOU + inclining tiers + demand tariff: 3 TOU periods with US holidays, 2 pro-rata tiers, a monthly
15-min peak demand charge, a TOU (peak) 30-min demand charge, a monthly fixed charge and a 6 % tax. Meters are rated
in blocks of 2,000 (the billing run's block size) on ONE core (BLAS/OpenMP threads pinned to 1). Usage is integer Wh
(as meters report it) from a fixed seed; five distinct blocks are generated up front and cycled, so generation is
not timed and every block is still rated in full.

The baseline rates a sample of S meters (default 200; --quick 50) one at a time with plain Python: per interval a
zoneinfo conversion, holiday/weekday/hour lookup, period sums, tier split, demand blocks, Decimal money with the same
rounding rule. Its intervals/s is measured on the sample and extrapolated linearly (per-meter cost is independent
of fleet size). Bills of the sample must be identical (every line's quantity and amount, and the total).

Part (b), the billing run from the database for 10,000 meters, is added by the billing-run engineer at the hook
marked BILLING-RUN HOOK below.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from datetime import date, datetime  # noqa: E402
from decimal import ROUND_HALF_EVEN, Decimal  # noqa: E402
from pathlib import Path  # noqa: E402
from zoneinfo import ZoneInfo  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rating.compile import CompiledTariff, compile_tariff  # noqa: E402
from rating.engine import rate_block  # noqa: E402
from rating.local_time import local_midnight_ts  # noqa: E402
from rating.tariff import TariffSpec  # noqa: E402
from rating.time_axis import build_axis  # noqa: E402

TZ = "America/Chicago"
START, END = date(2024, 1, 1), date(2024, 2, 1)
BLOCK = 2000

SPEC = {
    "id": "bench-tou-tiers-demand",
    "effective_from": "2024-01-01",
    "tou": {"default": "off", "rules": ["part: weekdays 7-16", "peak: weekdays 16-21"]},
    "holidays": {"country": "US"},
    "energy": {
        "rates": {"peak": ["0.3512", "0.4012"], "part": ["0.2511", "0.3011"], "off": ["0.1509", "0.2009"]},
        "tier_limits_kwh": ["500"],
        "allocation": "pro_rata",
    },
    "demand": [
        {"code": "max_demand", "rates": {"all": "8.50"}, "interval_min": 15},
        {"code": "peak_demand", "rates": {"peak": "3.25"}, "tou": "energy", "interval_min": 30},
    ],
    "fixed": [{"code": "customer", "amount": "12.00"}],
    "taxes": [{"code": "tax", "percent": "6", "applies_to": ["energy", "demand", "fixed"]}],
}


def python_bill(t: CompiledTariff, ts: np.ndarray, wh: list[float]) -> list[tuple[str, int, int]]:
    """One meter, plain Python: (line code, quantity in thousandths, amount in cents) incl. the total."""
    zone = ZoneInfo(TZ)
    holidays = {date.fromordinal(date(1970, 1, 1).toordinal() + int(d)) for d in t.holiday_days([2024])}
    step = int(ts[1] - ts[0])
    per_period = [0.0] * len(t.periods)
    peaks: dict[str, dict[int, float]] = {d.code: {} for d in t.demand}
    blocks: dict[str, dict[tuple[int, object], list[float]]] = {d.code: {} for d in t.demand}
    for end_s, e in zip(ts.tolist(), wh, strict=True):
        local = datetime.fromtimestamp(end_s - step, zone)
        kind = 2 if local.date() in holidays else (1 if local.weekday() >= 5 else 0)
        p = int(t.schedule[kind, local.month - 1, local.hour])
        per_period[p] += e
        wall = int((local.replace(tzinfo=None) - datetime(1970, 1, 1)).total_seconds())
        offset = local.utcoffset()
        for d in t.demand:
            dp = int(d.schedule[kind, local.month - 1, local.hour])
            entry = blocks[d.code].setdefault((wall // d.interval_s, offset), [0.0, dp])
            entry[0] += e
    for d in t.demand:
        for total_wh, block_period in blocks[d.code].values():
            w = total_wh * 3600 / d.interval_s
            peaks[d.code][int(block_period)] = max(peaks[d.code].get(int(block_period), 0.0), w)
    total = sum(per_period)
    limit = float(t.tier_limits_wh[0])
    tier_totals = [min(total, limit), max(total - limit, 0.0)]
    out: list[tuple[str, int, int]] = []
    cent = Decimal("0.01")

    def money(rate: Decimal, qty_milli: int) -> int:
        return int((rate * Decimal(qty_milli) / 1000 / cent).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))

    for p, name in enumerate(t.periods):
        for k in range(2):
            share = per_period[p] / total if total > 0 else 0.0
            q = round(share * tier_totals[k])
            out.append((f"energy.{name}.t{k + 1}", q, money(t.energy_rate_text[p][k], q)))
    for d in t.demand:
        for p, name in enumerate(d.periods):
            if d.charged[p]:
                q = round(peaks[d.code].get(p, 0.0))
                out.append((f"{d.code}.{name}", q, money(d.rate_text[p][0], q)))
    out.append(("customer", 1000, int(t.fixed[0].amount_text / cent)))
    base = sum(a for _, _, a in out)
    tax = int((Decimal(base) * t.taxes[0].percent_text / 100).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    out.append(("tax", base * 10, tax))
    out.append(("total", 0, base + tax))
    return out


def engine_rows(block, row: int) -> list[tuple[str, int, int]]:  # type: ignore[no-untyped-def]
    out = [
        (s.code, int(block.quantity_milli[row, i]), int(block.amount_minor[row, i])) for i, s in enumerate(block.lines)
    ]
    return [*out, ("total", 0, int(block.total_minor[row]))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10,000 meter-months and a 50-meter sample")
    ap.add_argument("--meters", type=int, help="meter-months to rate (default 100,000)")
    ap.add_argument("--sample", type=int, help="meters rated by the Python baseline")
    args = ap.parse_args()
    meters = args.meters or (10_000 if args.quick else 100_000)
    sample = args.sample or (50 if args.quick else 200)

    tariff = compile_tariff(TariffSpec.model_validate(SPEC))
    zone = ZoneInfo(TZ)
    ts = np.arange(local_midnight_ts(START, zone) + 900, local_midnight_ts(END, zone) + 1, 900, dtype=np.int64)
    rng = np.random.default_rng(20240101)
    pool = [rng.integers(0, 400, size=(BLOCK, len(ts))).astype(np.float64) for _ in range(5)]
    axis = build_axis(tariff, ts, TZ)

    # (a) engine, one core
    rate_block(tariff, ts, pool[0][:10], tz=TZ, period_start=START, period_end=END, axis=axis)  # warm-up
    done, elapsed, first = 0, 0.0, None
    while done < meters:
        n = min(BLOCK, meters - done)
        x = pool[(done // BLOCK) % len(pool)][:n]
        t0 = time.perf_counter()
        block = rate_block(tariff, ts, x, tz=TZ, period_start=START, period_end=END, axis=axis)
        elapsed += time.perf_counter() - t0
        first = first or block
        done += n
    engine_ips = meters * len(ts) / elapsed
    print(
        f"engine: {meters} meter-months x {len(ts)} intervals in {elapsed:.2f} s = {engine_ips / 1e6:.1f} M intervals/s"
    )

    # baseline on a sample of the first block, and the identity check
    t0 = time.perf_counter()
    slow = [python_bill(tariff, ts, pool[0][i].tolist()) for i in range(sample)]
    slow_s = time.perf_counter() - t0
    python_ips = sample * len(ts) / slow_s
    assert first is not None
    mismatched = [i for i in range(sample) if slow[i] != engine_rows(first, i)]
    identical = not mismatched
    if mismatched:
        i = mismatched[0]
        diff = [(a, b) for a, b in zip(slow[i], engine_rows(first, i), strict=False) if a != b]
        print(f"MISMATCH in {len(mismatched)} of {sample} bills; meter {i}: {diff[:4]}")
    print(f"python: {sample} meters in {slow_s:.2f} s = {python_ips / 1e3:.0f} k intervals/s "
          f"(extrapolated to {meters} meters: {meters * len(ts) / python_ips / 60:.1f} min)")  # fmt: skip
    ratio = engine_ips / python_ips

    # BILLING-RUN HOOK (part b): the billing-run engineer adds `amiflow bill run` from the database for 10,000
    # meters here (meters/s, and the named bottleneck), appending its key=value pairs to the RESULT line.
    extra = ""

    print(
        f"RESULT rating engine_intervals_per_s={engine_ips:.0f} python_intervals_per_s={python_ips:.0f} "
        f"ratio={ratio:.0f} bills_identical={str(identical).lower()} meter_months={meters} sample={sample}{extra}"
    )
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
