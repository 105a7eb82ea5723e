"""The long fuzz run: >= 10^5 mutated inputs per decoder that takes bytes from outside (``tests/fuzz`` targets).

  python benchmarks/fuzz.py [--quick] [--n 100000] [--codec NAME ...] [--seed 1] [--jobs 1] [--out DIR]

For each codec (P1, IEC 62056-21, HDLC, DLMS APDU/A-XDR, Modbus replies, SML, M-Bus, MQTT payloads, the payments
API body, tariff files, URDB JSON, the meter registry CSV) the valid seeds are mutated ``--n`` times and every
input goes through every entry point. Three things fail a codec, and each failing input is saved under ``--out``:

- an exception from outside amiflow's error tree (``amiflow.errors``) escapes;
- one input takes more than 1 s (a timer interrupts a hang at 1 s);
- memory grows: tracemalloc traces the last tenth of the run (at least 2,000 inputs) and the memory still
  allocated after its second half must not exceed that after its first half by more than 256 KiB.

Prints one line per codec and ``RESULT fuzz ...`` with the counts per codec; exits 1 when a codec failed.
``--quick`` runs 500 inputs per codec.
"""

from __future__ import annotations

import argparse
import gc
import random
import signal
import sys
import time
import traceback
import tracemalloc
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from amiflow.errors import AmiflowError
from tests.fuzz import TARGETS, Target

LIMIT_S = 1.0
GROWTH_BYTES = 256 << 10


class Hang(BaseException):
    """One input ran past LIMIT_S (a BaseException, so no ``except Exception`` of the code under test eats it)."""


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise Hang


@dataclass
class Outcome:
    """What a codec's run found."""

    name: str
    inputs: int = 0
    escaped: Counter[str] = field(default_factory=Counter)
    slow: int = 0
    max_ms: float = 0.0
    growth_bytes: int = 0
    elapsed_s: float = 0.0
    examples: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.escaped) or self.slow > 0 or self.growth_bytes > GROWTH_BYTES


def _one(target: Target, data: bytes, out: Outcome, save: Path) -> None:
    t0 = time.perf_counter()
    signal.setitimer(signal.ITIMER_REAL, LIMIT_S)
    try:
        target.check(data)
    except AmiflowError:
        pass  # the documented answer of a strict entry point
    except Hang:
        out.slow += 1
        _save(save, out, data, f"no answer within {LIMIT_S:g} s")
    except Exception as exc:  # the finding: anything outside amiflow's tree
        where = traceback.extract_tb(exc.__traceback__)[-1]
        key = f"{type(exc).__name__} at {Path(where.filename).name}:{where.lineno}"
        out.escaped[key] += 1
        if out.escaped[key] == 1:
            _save(save, out, data, "".join(traceback.format_exception(exc, limit=-4)))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    took = (time.perf_counter() - t0) * 1e3
    out.max_ms = max(out.max_ms, took)
    if took > LIMIT_S * 1e3 and not out.slow:
        out.slow += 1
        _save(save, out, data, f"took {took:.0f} ms")
    out.inputs += 1


def _save(save: Path, out: Outcome, data: bytes, why: str) -> None:
    save.mkdir(parents=True, exist_ok=True)
    path = save / f"{out.name}-{out.inputs}.bin"
    path.write_bytes(data)
    out.examples.append(f"{path}: {why.strip()}")


def run_codec(target: Target, n: int, seed: int, save: Path) -> Outcome:
    """``n`` mutated inputs through ``target``; the last tenth traced for memory growth."""
    signal.signal(signal.SIGALRM, _alarm)
    rng = random.Random(f"{seed}:{target.name}")
    pool = target.seeds()
    out = Outcome(target.name)
    t0 = time.perf_counter()
    for data in pool:
        _one(target, data, out, save)
    traced = min(n, max(2000, n // 10))
    for _ in range(n - traced):
        _one(target, target.mutate(rng, pool), out, save)
    tracemalloc.start()
    try:
        half = traced // 2
        for _ in range(half):
            _one(target, target.mutate(rng, pool), out, save)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(traced - half):
            _one(target, target.mutate(rng, pool), out, save)
        gc.collect()
        out.growth_bytes = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    out.elapsed_s = time.perf_counter() - t0
    return out


def _job(args: tuple[str, int, int, Path]) -> Outcome:
    name, n, seed, save = args
    return run_codec(next(t for t in TARGETS if t.name == name), n, seed, save)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 inputs per codec (under a minute)")
    parser.add_argument("--n", type=int, default=100_000, help="mutated inputs per codec (default 100,000)")
    parser.add_argument("--codec", action="append", choices=[t.name for t in TARGETS], help="only these (repeat)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the mutations (default 1)")
    parser.add_argument("--jobs", type=int, default=1, help="codecs run in parallel processes (default 1)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/amiflow-fuzz"), help="where failing inputs go")
    args = parser.parse_args(argv)
    n = 500 if args.quick else args.n
    names = args.codec or [t.name for t in TARGETS]
    jobs = [(name, n, args.seed, args.out) for name in names]
    if args.jobs > 1:
        with Pool(args.jobs) as pool:
            outcomes = pool.map(_job, jobs, chunksize=1)
    else:
        outcomes = [_job(j) for j in jobs]
    for o in outcomes:
        verdict = "FAIL" if o.failed else "ok"
        print(
            f"{o.name:>13}: {o.inputs:>7} inputs  escaped {sum(o.escaped.values()):>4}  slow {o.slow}"
            f"  max {o.max_ms:6.1f} ms  growth {o.growth_bytes / 1024:7.1f} KiB  {o.elapsed_s:6.1f} s  {verdict}"
        )
        for key, count in o.escaped.most_common():
            print(f"{'':>15}{count} x {key}")
        for example in o.examples[:5]:
            print(f"{'':>15}{example.splitlines()[0]}")
    failed = [o.name for o in outcomes if o.failed]
    counts = " ".join(f"{o.name.replace('-', '_')}={o.inputs}" for o in outcomes)
    print(
        f"RESULT fuzz codecs={len(outcomes)} inputs={sum(o.inputs for o in outcomes)}"
        f" escaped={sum(sum(o.escaped.values()) for o in outcomes)} slow={sum(o.slow for o in outcomes)}"
        f" max_ms={max(o.max_ms for o in outcomes):.1f}"
        f" max_growth_kib={max(o.growth_bytes for o in outcomes) / 1024:.1f} failed={len(failed)} {counts}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
