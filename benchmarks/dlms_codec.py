"""DLMS profile decoding speed: load-profile rows decoded per second by amiflow's decoder vs a baseline, same run.

The input is what a meter sends for a range read of its 15-minute load profile (1-0:99.1.0): an A-XDR array of
rows ``structure{clock date-time, 1-0:1.29.0 double-long-unsigned, 1-0:2.29.0 double-long-unsigned}`` for one
meter-year (35,040 rows; ``--quick``: 31 days), with and without null-compressed clocks. Both decoders return the
same epoch-second timestamps and value columns (checked before timing):

- amiflow: :func:`protocols.dlms.profile.decode_profile_fast` (uniform rows as one numpy byte matrix; other
  buffers, such as null-compressed ones, by :func:`protocols.dlms.profile_generic.decode_profile`, one pass over
  the bytes);
- baseline: the straightforward way, :func:`protocols.dlms.axdr.decode` into Python values, then a loop over the
  rows building a datetime per clock cell and lists per column.

Run ``.venv/bin/python -m benchmarks.dlms_codec [--quick]``; the last line is
``RESULT dlms_codec rows_per_s=N baseline_rows_per_s=N ratio=R``.
"""

from __future__ import annotations

import argparse
import struct
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np

from protocols.dlms import axdr
from protocols.dlms.cosem import DateTime
from protocols.dlms.profile import decode_profile_fast
from simulators.load import LoadModel

PERIOD_S = 900
_DT = struct.Struct(">HBBBBBBBhB")


def make_buffer(rows: int, *, compress: bool) -> bytes:
    start = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
    ts = start + PERIOD_S * np.arange(1, rows + 1, dtype=np.int64)
    model = LoadModel(3)
    imp = model.interval_energy_wh(0, ts).astype(np.int64).tolist()
    exp = model.export_energy_wh(1, ts).astype(np.int64).tolist()
    out: list[Any] = []
    for i, t in enumerate(ts.tolist()):
        clock = None if compress and i % 96 else DateTime.from_datetime(datetime.fromtimestamp(t, UTC)).to_bytes()
        out.append((clock, axdr.DoubleLongUnsigned(imp[i]), axdr.DoubleLongUnsigned(exp[i])))
    return axdr.encode(out)


def baseline(raw: bytes) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    rows = axdr.decode(raw)
    ts: list[int] = []
    cols: list[list[float]] = [[], []]
    last = 0
    for row in rows:
        clock = row[0]
        if clock is None:
            last += PERIOD_S
        else:
            y, mo, d, _wd, h, mi, s, _hu, _dev, _st = _DT.unpack(clock)
            last = int(datetime(y, mo, d, h, mi, s, tzinfo=UTC).timestamp())
        ts.append(last)
        for c in (1, 2):
            cols[c - 1].append(float(row[c]))
    return np.array(ts, dtype=np.int64), np.array(cols).T


def amiflow(raw: bytes) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    out = decode_profile_fast(raw, 0, PERIOD_S)
    return out.ts, out.values[:, 1:]


def rate(fn: Callable[[bytes], Any], raw: bytes, rows: int, budget_s: float) -> float:
    best = float("inf")
    deadline = time.perf_counter() + budget_s
    runs = 0
    while runs < 3 or (time.perf_counter() < deadline and runs < 50):
        t0 = time.perf_counter()
        fn(raw)
        best = min(best, time.perf_counter() - t0)
        runs += 1
    return rows / best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="31 days of rows and a short timing budget")
    args = parser.parse_args(argv)
    rows = 96 * (31 if args.quick else 365)
    budget = 1.0 if args.quick else 5.0
    totals = {"amiflow": 0.0, "baseline": 0.0}
    for compress in (False, True):
        raw = make_buffer(rows, compress=compress)
        ts_a, v_a = amiflow(raw)
        ts_b, v_b = baseline(raw)
        assert np.array_equal(ts_a, ts_b) and np.array_equal(v_a, v_b), "the decoders disagree"
        ours, base = rate(amiflow, raw, rows, budget), rate(baseline, raw, rows, budget)
        totals["amiflow"] += ours
        totals["baseline"] += base
        kind = "null-compressed clocks" if compress else "every clock present"
        print(f"{rows} rows, {len(raw)} bytes, {kind}: amiflow {ours:,.0f} rows/s, baseline {base:,.0f} rows/s")
    ours, base = totals["amiflow"] / 2, totals["baseline"] / 2
    print(f"RESULT dlms_codec rows={rows} rows_per_s={ours:.0f} baseline_rows_per_s={base:.0f} ratio={ours / base:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
