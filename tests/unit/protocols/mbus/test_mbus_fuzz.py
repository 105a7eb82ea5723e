"""Fuzzing: mutated corpus frames and random bytes raise only amiflow's own errors, never hang, and the stream
decoders stay bounded. A seeded hypothesis run in CI; ``-m slow`` adds a long run of 10^5 mutated frames."""

from __future__ import annotations

import contextlib
import os
import random
import time
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amiflow.errors import AmiflowError
from protocols.mbus import (
    KeyRing,
    MbusStreamDecoder,
    WmbusReceiver,
    decode_mbus_capture,
    decode_wmbus,
    parse_application,
    parse_frame,
    parse_records,
)

KEYS = KeyRing({"14639203": "F8B24F12F9D113F680BEE765FDE67EC0", "49705932": "A1" * 16})


def _mutate(rng: random.Random, frame: bytes) -> bytes:
    data = bytearray(frame)
    for _ in range(rng.randint(1, 6)):
        op = rng.random()
        if op < 0.4 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif op < 0.6 and data:
            del data[rng.randrange(len(data)) :]
        elif op < 0.8:
            pos = rng.randrange(len(data) + 1)
            data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif data:
            pos = rng.randrange(len(data))
            data[pos] ^= 1 << rng.randrange(8)
    return bytes(data)


def _fix_checksum(data: bytes) -> bytes:
    """Mutations that keep the link layer valid reach the application layer: recompute CS of a long frame."""
    if len(data) > 6 and data[0] == 0x68 and data[1] == data[2] and len(data) == data[1] + 6:
        body = data[4:-2]
        return data[:-2] + bytes((sum(body) & 0xFF, 0x16))
    return data


def _exercise(data: bytes) -> None:
    with contextlib.suppress(AmiflowError):
        parse_frame(data)
    with contextlib.suppress(AmiflowError):
        decode_wmbus(data, keys=KEYS)
    decode_mbus_capture(data, keys=KEYS, received_ts=0)  # never raises: issues
    if len(data) > 1:
        parse_application(data[0], data[1:], keys=KEYS)
        parse_records(data)
    dec = MbusStreamDecoder()
    dec.receive_data(data)
    dec.receive_data(b"")
    for _ in range(len(data) + 2):
        if dec.next_event() is None:
            break
    else:
        raise AssertionError("the stream decoder did not drain")
    rx = WmbusReceiver("raw", keys=KEYS)
    rx.receive_data(data)
    rx.receive_data(b"")
    for _ in range(len(data) + 2):
        if rx.next_event() is None:
            break
    else:
        raise AssertionError("the wireless receiver did not drain")


def _seeds(corpus: ModuleType) -> list[bytes]:
    return [bytes.fromhex(h) for _, h in corpus.frames()]


def run_mutations(corpus: ModuleType, count: int, seed: int) -> float:
    """Mutate corpus frames ``count`` times; returns frames per second."""
    rng = random.Random(seed)
    seeds = _seeds(corpus)
    start = time.perf_counter()
    for i in range(count):
        data = _mutate(rng, rng.choice(seeds))
        _exercise(_fix_checksum(data) if i % 2 else data)
    return count / (time.perf_counter() - start)


@settings(max_examples=400, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=300))
def test_random_bytes_raise_only_amiflow_errors(data: bytes) -> None:
    _exercise(data)


def test_mutated_corpus_frames_ci(corpus: ModuleType) -> None:
    run_mutations(corpus, 3_000, seed=13)


@pytest.mark.slow
def test_mutated_corpus_frames_long(corpus: ModuleType) -> None:
    # CI runs 5,000 (seconds); AMIFLOW_MBUS_FUZZ_N=100000 (or benchmarks/fuzz.py) is the 10^5 run
    n = int(os.environ.get("AMIFLOW_MBUS_FUZZ_N", "5000"))
    rate = run_mutations(corpus, n, seed=1_013)
    print(f"{n} mutated frames at {rate:.0f} frames/s")
