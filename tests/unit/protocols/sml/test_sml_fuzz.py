"""Fuzzing the SML codec: mutated corpus captures (bit flips, truncation, insertion, deletion, duplication, splices)
and arbitrary bytes go through every entry point; only amiflow's own errors may escape, and only from the strict
entry points (``SmlFrame.from_bytes``, ``decode_tlv``). The capture decoder, the stream decoder and the message
parser never raise: bad input is an issue or a counted fault.

CI runs the hypothesis part and a few thousand seeded mutations (well under 20 s). The long run is this file as a
script: ``.venv/bin/python tests/unit/protocols/sml/test_sml_fuzz.py --n 100000`` prints the figures.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amiflow.errors import AmiflowError
from protocols.sml import SmlFrame, SmlStreamDecoder, decode_capture, from_hex, parse_messages
from protocols.sml.tlv import decode_tlv

DATA = Path(__file__).parents[3] / "data" / "sml"
_ESC = b"\x1b\x1b\x1b\x1b"
_INSERTS = (_ESC, _ESC + b"\x01\x01\x01\x01", _ESC + b"\x1a", b"\x00", b"\x76", b"\xff")


def corpus() -> list[bytes]:
    out = []
    for path in sorted(DATA.iterdir()):
        if path.suffix in (".hex", ".bin"):
            data = path.read_bytes()
            out.append(from_hex(data) or data)
    return out


def mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    """The fuzz suite's byte mutations (tests/fuzz/mutators.py) with this protocol's characters to insert."""
    from tests.fuzz.mutators import mutate_bytes  # here: tests/fuzz imports this module for its corpus and check

    return mutate_bytes(rng, data, pool, _INSERTS)


def check(data: bytes, rng: random.Random | None = None) -> Counter[str]:
    """Run ``data`` through every entry point; raise AssertionError when a foreign exception escapes."""
    seen: Counter[str] = Counter()
    capture = decode_capture(data)
    seen["issues"] += len(capture.issues)
    seen["readings"] += len(capture.batch)
    decode_capture(data, hex=False, received_ts=1_700_000_000)
    parse_messages(data)
    dec = SmlStreamDecoder(max_frame_bytes=4096)
    step = rng.randint(1, 64) if rng else 7
    for i in range(0, len(data), step):
        dec.receive_data(data[i : i + step])
        for _ in range(len(data) + 2):  # next_event must reach NEED_DATA: never loop forever
            if dec.next_event() is None:
                break
        else:
            raise AssertionError("next_event did not reach NEED_DATA")
        assert len(dec._buf) <= 4096 + 2 * step + 8
    dec.receive_data(b"")
    while dec.next_event() is not None:
        pass
    seen["frames"] += dec.frames
    seen["faults"] += dec.faults
    for strict in (SmlFrame.from_bytes, decode_tlv):
        try:
            strict(data)
        except AmiflowError as exc:
            seen[type(exc).__name__] += 1
    return seen


@settings(max_examples=600, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_arbitrary_bytes_raise_only_amiflow_errors(data: bytes) -> None:
    check(data)


@settings(max_examples=600, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_mutated_captures_raise_only_amiflow_errors(seed: int) -> None:
    rng = random.Random(seed)
    pool = corpus()
    check(mutate(rng, rng.choice(pool), pool), rng)


def run(n: int, seed: int = 12) -> Counter[str]:
    rng = random.Random(seed)
    pool = corpus()
    total: Counter[str] = Counter()
    for _ in range(n):
        total += check(mutate(rng, rng.choice(pool), pool), rng)
    total["inputs"] = n
    return total


def test_seeded_mutation_run() -> None:
    figures = run(8000)
    assert figures["frames"] > 0 and figures["faults"] > 0 and figures["FrameError"] > 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="long SML fuzz run over the corpus")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    figures = run(args.n, args.seed)
    took = time.perf_counter() - t0
    print(f"{args.n} mutated inputs in {took:.1f} s; no foreign exception escaped")
    print(" ".join(f"{k}={v}" for k, v in sorted(figures.items())))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[4]))  # the checkout: tests.fuzz
    sys.exit(main())
