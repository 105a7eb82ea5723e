"""Fuzzing the P1 codec: mutated corpus telegrams (bit flips, truncation, insertion of protocol characters or noise,
deletion, duplication, splices with other telegrams) and arbitrary bytes go through every entry point: the splitter,
:func:`decode_telegram`, :func:`parse_telegram` and :func:`describe_capture`. None of them may raise: bad input is
an issue with a known code, never a foreign exception (nor an amiflow one).

CI runs the hypothesis part (fixed seed) and a few thousand seeded mutations (well under 20 s); the long run is
marked slow and sized by ``AMIFLOW_P1_FUZZ_N``, or run this file as a script for the figures:
``.venv/bin/python tests/unit/protocols/p1/test_p1_fuzz.py --n 100000``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from protocols.p1 import NEED_DATA, P1Splitter, decode_telegram, describe_capture, parse_telegram

DATA = Path(__file__).resolve().parents[3] / "data" / "p1"
CODES = frozenset(
    {
        "no_telegram", "bad_crc", "crc_missing", "bad_line", "bad_timestamp", "no_timestamp", "no_meter_id",
        "bad_value", "truncated", "receive_time", "meter_id_from_header", "obis_repaired", "unknown_unit",
        "bad_power_failure_log", "bad_demand_history",
    }
)  # fmt: skip
_INSERTS = (b"/", b"!", b"(", b")", b"*", b"\r\n", b":", b".", b"\x02", b"\x03", b"\xff", b"*255", b"0-1:24.2.1(")


def corpus() -> list[bytes]:
    return [(DATA / e["file"]).read_bytes() for e in json.loads((DATA / "corpus.json").read_text())]


def mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    """The fuzz suite's byte mutations (tests/fuzz/mutators.py) with this protocol's characters to insert."""
    from tests.fuzz.mutators import mutate_bytes  # here: tests/fuzz imports this module for its corpus and check

    return mutate_bytes(rng, data, pool, _INSERTS)


def check(data: bytes, received_ts: int | None = 1_700_000_000) -> Counter[str]:
    """Every entry point on ``data``; the issue codes seen. Raises (the test fails) on any exception."""
    seen: Counter[str] = Counter()
    splitter = P1Splitter(max_bytes=4096)
    splitter.receive_data(data)
    while (telegram := splitter.next_event()) is not NEED_DATA:
        t = decode_telegram(telegram, received_ts=received_ts)
        batch, issues = parse_telegram(telegram, received_ts=received_ts)
        assert len(batch) == len(t.readings) and issues == list(t.issues)
        assert all(r.value == r.value for r in t.readings)  # no NaN from a mangled number
        seen.update(i.code for i in t.issues)
    seen.update(i["code"] for i in describe_capture(data, received_ts=received_ts)["issues"])
    seen.update(i.code for i in parse_telegram(data)[1])
    unknown = set(seen) - CODES
    assert not unknown, f"issue codes outside the documented set: {unknown}"
    return seen


@seed(20240612)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(corpus()), st.lists(st.tuples(st.integers(0, 5000), st.binary(max_size=8)), max_size=6))
def test_hypothesis_edits_of_corpus_telegrams(telegram: bytes, edits: list[tuple[int, bytes]]) -> None:
    buf = bytearray(telegram)
    for pos, chunk in edits:
        at = pos % (len(buf) + 1)
        buf[at : at + len(chunk) // 2] = chunk
    check(bytes(buf))


@seed(20240613)
@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_hypothesis_arbitrary_bytes(junk: bytes) -> None:
    check(junk)
    check(b"/" + junk + b"!\r\n", received_ts=None)


def _run(n: int, rng_seed: int) -> tuple[Counter[str], float]:
    rng = random.Random(rng_seed)
    pool = corpus()
    seen: Counter[str] = Counter()
    start = time.perf_counter()
    for _ in range(n):
        seen.update(check(mutate(rng, rng.choice(pool), pool)))
    return seen, time.perf_counter() - start


def test_seeded_mutations() -> None:
    seen, _ = _run(2000, rng_seed=1)
    assert seen["bad_crc"] and seen["bad_line"] and seen["truncated"]  # the mutations do hit the checks


@pytest.mark.slow
def test_long_run_of_mutations() -> None:
    seen, _ = _run(int(os.environ.get("AMIFLOW_P1_FUZZ_N", "10000")), rng_seed=2)
    assert sum(seen.values()) > 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[4]))  # the checkout: tests.fuzz
    parser = argparse.ArgumentParser(description="the long P1 fuzz run")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=2)
    args = parser.parse_args()
    counts, elapsed = _run(args.n, args.seed)
    print(f"{args.n} mutated telegrams in {elapsed:.1f} s, no exception; issues: {dict(counts.most_common())}")
    sys.exit(0)
