"""Every decoder that takes bytes from outside, fuzzed: hypothesis draws mutations of valid inputs (fixed seed,
CI-sized) and each goes through every entry point of its codec; only amiflow's own errors may come out
(``tests/fuzz/codec_targets.py``, ``document_targets.py``). The long runs, >= 10^5 inputs per codec with time and
memory limits, are ``benchmarks/fuzz.py``. Arbitrary-bytes tests of single codecs live beside the codecs' own tests.
"""

from __future__ import annotations

import contextlib
import random

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from amiflow.errors import AmiflowError
from tests.fuzz import TARGETS, Target

# the slower codecs (big seeds, every entry point of a capture decoder) get fewer examples: tests/fuzz stays < 60 s
_EXAMPLES = {"p1": 60, "sml": 60, "mbus": 80, "urdb": 80, "tariff": 120}


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_the_seeds_decode_cleanly(target: Target) -> None:
    """Valid inputs go through every entry point without an error (a fuzz run from broken seeds proves little)."""
    seeds = target.seeds()
    assert seeds
    for data in seeds:
        target.check(data)


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_mutations_raise_only_amiflow_errors(target: Target) -> None:
    pool = target.seeds()

    @seed(17)
    @settings(
        max_examples=_EXAMPLES.get(target.name, 200),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.integers(0, 2**32 - 1))
    def run(rng_seed: int) -> None:
        data = target.mutate(random.Random(rng_seed), pool)
        with contextlib.suppress(AmiflowError):  # a strict entry point's answer; anything else fails the test
            target.check(data)

    run()


@pytest.mark.parametrize(
    "target", [t for t in TARGETS if t.name in ("mqtt", "payments", "registry-csv")], ids=lambda t: t.name
)
def test_arbitrary_bytes_raise_only_amiflow_errors(target: Target) -> None:
    @seed(18)
    @settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.binary(max_size=300))
    def run(data: bytes) -> None:
        with contextlib.suppress(AmiflowError):
            target.check(data)

    run()
