"""Mutations of valid inputs for fuzzing: bytes (bit flips, truncation, insertion of protocol tokens or noise,
deletion, duplication, splices with another seed) and JSON documents (a value replaced by one of another type, a key
dropped or added, a list emptied or repeated), all driven by one ``random.Random`` so a run is reproducible.

Used by the hypothesis tests of ``tests/fuzz`` (hypothesis draws the seed of the ``Random``) and by the long runs
of ``benchmarks/fuzz.py``.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Sequence
from typing import Any

__all__ = ["mutate_bytes", "mutate_json"]

_ODD_VALUES: tuple[Any, ...] = (
    None, True, False, 0, -1, 1, 2**31, 2**63, -(2**64), 1e308, -1e-308, 0.1, "", " ", "0", "-0", "1e999", "NaN",
    "Infinity", "x" * 300, "\u0000", "\ud7ff\ue000", "2026-02-30T25:61:00Z", "0000-01-01", "9999-12-31T23:59:59+14:00",
    "1-0:1.8.0", "1-0:1.29.0*255", "kWh", "EUR", "1.005", "1e3", "-0.00", [], {}, [None], {"": None}, [[[[[]]]]],
)  # fmt: skip


def mutate_bytes(rng: random.Random, data: bytes, pool: Sequence[bytes], tokens: Sequence[bytes] = ()) -> bytes:
    """One to four edits of ``data``; ``tokens`` are protocol bytes worth inserting (delimiters, tags)."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(7)
        pos = rng.randrange(len(buf) + 1)
        if kind == 0 and buf:  # bit flips
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif kind == 1:  # truncation
            del buf[pos:]
        elif kind == 2:  # insertion of protocol tokens or noise
            buf[pos:pos] = rng.choice(tokens) if tokens and rng.random() < 0.6 else rng.randbytes(rng.randint(1, 16))
        elif kind == 3:  # deletion
            del buf[pos : pos + rng.randint(1, 32)]
        elif kind == 4 and buf:  # duplication of a slice
            a = rng.randrange(len(buf))
            buf[pos:pos] = buf[a : a + rng.randint(1, 64)]
        elif kind == 5 and pool:  # splice with another seed
            other = rng.choice(pool)
            buf[pos:] = other[rng.randrange(len(other) + 1) :]
        elif kind == 6 and buf:  # a byte set to an extreme
            buf[rng.randrange(len(buf))] = rng.choice((0x00, 0x7F, 0x80, 0xFF))
    return bytes(buf)


def _odd(rng: random.Random) -> Any:
    return copy.deepcopy(rng.choice(_ODD_VALUES))  # a fresh copy: a shared [] or {} edited later is a cycle


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node[:8]):
            out += _paths(v, (*path, i))
    return out


def _edit(rng: random.Random, doc: Any) -> Any:
    path = rng.choice(_paths(doc))
    if not path:
        return _odd(rng) if rng.random() < 0.1 else doc
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    key = path[-1]
    kind = rng.randrange(5)
    if kind == 0 and isinstance(parent, dict):
        del parent[key]
    elif kind == 1 and isinstance(parent, dict):
        parent[rng.choice(("extra", "", key + "_x" if isinstance(key, str) else "k"))] = _odd(rng)
    elif kind == 2 and isinstance(parent[key], list):
        parent[key] = [] if rng.random() < 0.5 else copy.deepcopy(parent[key] * rng.randint(2, 5))
    elif kind == 3 and isinstance(parent[key], (int, float)) and not isinstance(parent[key], bool):
        parent[key] = rng.choice((0, -parent[key], parent[key] * 10 ** rng.randint(1, 30), str(parent[key])))
    else:
        parent[key] = _odd(rng)
    return doc


def mutate_json(rng: random.Random, data: bytes, pool: Sequence[bytes], tokens: Sequence[bytes] = ()) -> bytes:
    """Structural edits of a JSON document most of the time (so the decoder behind the parser is reached), byte
    edits of its text the rest (so the parser and its error path are, too)."""
    if rng.random() < 0.25:
        return mutate_bytes(rng, data, pool, tokens or (b'"', b"{", b"}", b"[", b"]", b",", b":", b"\\u0000", b"1e99"))
    try:
        doc = json.loads(data)
    except ValueError:
        return mutate_bytes(rng, data, pool, tokens)
    for _ in range(rng.randint(1, 3)):
        doc = _edit(rng, doc)
    return json.dumps(doc).encode()
