"""What the decode benchmarks (``mbus_decode``, ``sml_decode``) share: the best-of timing and the ``main`` that
checks both decoders find every frame and prints the ``RESULT`` line."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

Decoder = Callable[[bytes], tuple[int, int]]  # stream -> (frames, readings)


def rate(fn: Decoder, stream: bytes, budget_s: float) -> tuple[float, int]:
    """Frames per second of ``fn`` over ``stream``: the best of 2 to 20 runs within ``budget_s``."""
    best, runs, frames = float("inf"), 0, 0
    deadline = time.perf_counter() + budget_s
    while runs < 2 or (time.perf_counter() < deadline and runs < 20):
        t0 = time.perf_counter()
        frames, _ = fn(stream)
        best = min(best, time.perf_counter() - t0)
        runs += 1
    return frames / best, frames


def decode_main(
    argv: list[str] | None,
    *,
    doc: str | None,
    key: str,
    label: str,
    make_stream: Callable[[int], bytes],
    amiflow: Decoder,
    baseline: Decoder,
) -> int:
    """``--quick``: 2,000 ``label`` and a 2 s timing budget per decoder (else 20,000 and 10 s)."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"2,000 {label} and a short timing budget")
    args = parser.parse_args(argv)
    n = 2_000 if args.quick else 20_000
    stream = make_stream(n)
    got, rows = amiflow(stream)
    if got != n or baseline(stream)[0] != n:
        raise SystemExit(f"a decoder lost a frame: amiflow found {got} of {n}")
    ours, _ = rate(amiflow, stream, 2.0 if args.quick else 10.0)
    base, _ = rate(baseline, stream, 2.0 if args.quick else 10.0)
    print(f"{n} {label}, {len(stream)} bytes, {rows} readings: amiflow {ours:,.0f}/s, baseline {base:,.0f}/s")
    print(
        f"RESULT {key} frames={n} frames_per_s={ours:.0f} baseline_frames_per_s={base:.0f} "
        f"vs_baseline={ours / base:.2f}"
    )
    return 0
