"""Bill document benchmark: N bills (default 20,000; --quick 10,000) built and rendered as customer PDFs.

  python benchmarks/bill_render.py [--quick] [--bills N] [--jobs P]

Setup (not timed): N meter-months of 15-minute usage (November 2026, America/Los_Angeles, integer Wh from a fixed
seed; five distinct blocks of 2,000 meters cycled) rated with the rating engine on the example residential TOU +
tiers tariff (rating/tariffs/residential_tou_tiers.toml) into bill JSON, as the billing run stores them.

Timed:
- build: per bill, the daily usage split by TOU period (``documents_usage.daily_tou``) and the document
  (``documents_data.document_from_bill``) - everything ``bill render`` does after its queries;
- render: ``write_documents`` - every bill's PDF written to a temporary folder plus ``index.json``, in P processes
  (default: the CPUs); ``bills_per_s`` = N / (build + render) seconds;
- html: the HTML page of 1,000 of the documents, one process (``html_per_s``);
- baseline: the same N bills' JSON written as one file each into the same kind of folder, one process - the cost
  floor of "one file per bill"; ``vs_baseline`` = bills_per_s / baseline_per_s.

Ends with ``RESULT bill_render bills=N bills_per_s=... vs_baseline=... pdf_ms=... build_per_s=... html_per_s=...
baseline_per_s=... processes=P``; ``pdf_ms`` is one process's time per PDF (render time x P / N).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import UTC, date, datetime, timedelta  # noqa: E402
from decimal import Decimal  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402
from zoneinfo import ZoneInfo  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from billing_bridge.customer.documents import write_documents  # noqa: E402
from billing_bridge.customer.documents_data import document_from_bill  # noqa: E402
from billing_bridge.customer.documents_html import render_html  # noqa: E402
from billing_bridge.customer.documents_model import BillDocument, Customer, PaymentLine, Statement  # noqa: E402
from billing_bridge.customer.documents_usage import daily_tou  # noqa: E402
from rating import bills_json, compile_tariff, rate_block  # noqa: E402
from rating.local_time import local_midnight_ts  # noqa: E402
from rating.tariff_files import load_tariff  # noqa: E402
from rating.time_axis import build_axis  # noqa: E402

TZ = "America/Los_Angeles"
START, END = date(2026, 11, 1), date(2026, 12, 1)
BLOCK = 2000
TARIFF = ROOT / "rating" / "tariffs" / "residential_tou_tiers.toml"


def _blocks(n: int) -> tuple[Any, np.ndarray, list[tuple[list[dict[str, Any]], np.ndarray]]]:
    """The compiled tariff, the interval ends, and (bills, usage) of each distinct block of meters."""
    tariff = compile_tariff(max(load_tariff(TARIFF), key=lambda v: v.version))
    zone = ZoneInfo(TZ)
    lo, hi = local_midnight_ts(START, zone), local_midnight_ts(END, zone)
    ts = np.arange(lo + 900, hi + 1, 900, dtype=np.int64)
    axis = build_axis(tariff, ts, TZ)
    rng = np.random.default_rng(7)
    hour = ((ts - 900 - 8 * 3600) % 86400) // 3600
    shape = 60.0 + 180.0 * ((hour >= 17) & (hour < 21)) + 40.0 * ((hour >= 7) & (hour < 9))
    out = []
    for b in range(min(5, -(-n // BLOCK))):
        usage = np.rint(shape[None, :] * rng.uniform(0.5, 1.6, (BLOCK, len(ts)))).astype(np.float64)
        block = rate_block(tariff, ts, usage, None, tz=TZ, period_start=START, period_end=END, axis=axis)
        names = [f"M{b:01d}{i:05d}" for i in range(BLOCK)]
        bills = bills_json(block, names, accounts=[f"ACC-{b:01d}{i:05d}" for i in range(BLOCK)])
        out.append((bills, usage))
    return tariff, ts, out


def _documents(n: int, tariff: Any, ts: np.ndarray, blocks: list[Any]) -> list[BillDocument]:
    issued = datetime(2026, 12, 2, 9, tzinfo=UTC)
    docs = []
    for k in range(n):
        bills, usage = blocks[(k // BLOCK) % len(blocks)]
        bill = dict(bills[k % BLOCK], bill_id=f"ACC-{k:06d}:2026-11-01:2026-11-30", account=f"ACC-{k:06d}")
        total = Decimal(bill["total"])
        daily = daily_tou(tariff, TZ, START, END, ts, usage[k % BLOCK], 900)
        statement = Statement(Decimal("42.50"), (PaymentLine(date(2026, 11, 12), Decimal("42.50")),), total,
                              date(2026, 11, 30) + timedelta(days=21))  # fmt: skip
        customer = Customer(bill["account"], f"Customer {k}", (f"{k} Main Street", "Springfield, CA 90001"))
        docs.append(document_from_bill(bill, issued_at=issued, timezone=TZ, customer=customer, statement=statement,
                                       usage=daily, tariff_name="Residential TOU with baseline tiers",
                                       tax_codes=frozenset({"utility_users_tax"})))  # fmt: skip
    return docs


def _baseline(docs: list[BillDocument], bills: list[dict[str, Any]], folder: Path) -> float:
    folder.mkdir()
    t = time.perf_counter()
    for k, d in enumerate(docs):
        (folder / f"{k:06d}.json").write_text(json.dumps(bills[k % len(bills)] | {"bill_id": d.bill_id}))
    return len(docs) / (time.perf_counter() - t)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 bills")
    parser.add_argument("--bills", type=int)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    n = args.bills or (10_000 if args.quick else 20_000)
    tariff, ts, blocks = _blocks(n)
    t0 = time.perf_counter()
    docs = _documents(n, tariff, ts, blocks)
    build_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="amiflow-bills-") as tmp:
        t1 = time.perf_counter()
        written = write_documents(docs, Path(tmp) / "bills", formats=("pdf",), jobs=args.jobs)
        render_s = time.perf_counter() - t1
        pdfs = [w.pdf for w in written if w.pdf is not None]
        assert len(pdfs) == n and all(p.read_bytes()[:5] == b"%PDF-" for p in pdfs[:: max(1, n // 100)])
        assert len(json.loads((Path(tmp) / "bills" / "index.json").read_text())) == n
        t2 = time.perf_counter()
        for d in docs[:1000]:
            render_html(d)
        html_per_s = min(n, 1000) / (time.perf_counter() - t2)
        baseline = _baseline(docs, blocks[0][0], Path(tmp) / "json")
    rate = n / (build_s + render_s)
    print(f"built {n} documents in {build_s:.1f} s; their PDFs took {render_s:.1f} s in {args.jobs} process(es)")
    print(
        f"RESULT bill_render bills={n} bills_per_s={rate:.0f} vs_baseline={rate / baseline:.3f}"
        f" pdf_ms={render_s * max(1, args.jobs) / n * 1000:.2f} build_per_s={n / build_s:.0f}"
        f" html_per_s={html_per_s:.0f} baseline_per_s={baseline:.0f} processes={args.jobs}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
