"""The fleet's message generator (no broker): every fault kind lands in the stats exactly as a head-end sees it."""

from __future__ import annotations

import itertools
import json
import threading
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from simulators.faults import parse_faults
from simulators.fleet_config import FleetConfig, FleetStats
from simulators.fleet_messages import MessageGenerator
from simulators.load import LoadModel


def generate(config: FleetConfig) -> tuple[list[tuple[int, str, bytes]], FleetStats, MessageGenerator]:
    stats = FleetStats(meters=config.meters)
    model = LoadModel(config.seed, pv_share=config.pv_share, commercial_share=config.commercial_share)
    gen = MessageGenerator(config, model, parse_faults(config.faults), stats)
    messages: list[tuple[int, str, bytes]] = []
    for _ts, blocks in gen.steps(threading.Event()):
        for block in blocks:
            messages.extend(block.messages)
    messages.extend(gen.flush().messages)
    return messages, stats, gen


def head_end(config: FleetConfig, messages: list[tuple[int, str, bytes]]) -> Counter[str]:
    """A reference head-end: what it stores, counts as duplicate, quarantines (CONTRACT.md rules)."""
    seen: set[tuple[str, str, str]] = set()
    out: Counter[str] = Counter()
    for m, leaf, raw in messages:
        if leaf != "readings":
            continue
        try:
            doc = json.loads(raw)
        except ValueError:
            out["bad_messages"] += 1
            continue
        if not isinstance(doc.get("readings"), list):
            out["bad_messages"] += 1
            continue
        if doc["meter"] != config.meter_name(m):
            out["bad_messages"] += 1
            out["quarantined"] += len(doc["readings"])
            continue
        for r in doc["readings"]:
            assert r["unit"] == "kWh"
            if ".29." in r["obis"] and not 0 <= r["value"] < 50_000:
                out["quarantined"] += 1
                continue
            key = (doc["meter"], r["obis"], r["ts"])
            out["duplicates" if key in seen else "stored"] += 1
            seen.add(key)
    return out


START = datetime(2026, 3, 2, tzinfo=UTC)


@pytest.mark.parametrize("per_message", [1, 7, 96])
def test_every_fault_kind_is_accounted_for(per_message: int) -> None:
    config = FleetConfig(meters=40, start=START, days=3, per_message=per_message, faults="all=0.05", seed=4)
    messages, stats, _ = generate(config)
    seen = head_end(config, messages)
    assert set(stats.faults) == {"dup", "reorder", "gap", "malformed", "spike", "drift", "rollover", "spoof"}
    assert seen["stored"] == stats.readings_expected
    assert seen["duplicates"] == stats.readings_duplicate
    assert seen["quarantined"] == stats.readings_quarantined
    assert seen["bad_messages"] == stats.messages_quarantined
    assert stats.readings_published == stats.readings_expected + stats.readings_duplicate + stats.readings_quarantined
    assert sum(1 for _m, leaf, _r in messages if leaf == "readings") == stats.messages


def test_without_faults_every_interval_and_register_is_there_once() -> None:
    config = FleetConfig(meters=12, start=START, days=1, per_message=8, seed=2)
    messages, stats, gen = generate(config)
    pv = set(gen.pv_idx.tolist())
    assert head_end(config, messages)["stored"] == stats.readings_expected == stats.readings_published
    expected = sum((96 + 96 // 8) * (2 if m in pv else 1) for m in range(12))
    assert stats.readings_expected == expected
    assert stats.faults == {}


def test_same_seed_same_bytes() -> None:
    config = FleetConfig(meters=8, start=START, days=1, per_message=4, faults="all=0.05", seed=9)
    assert generate(config)[0] == generate(config)[0]


def test_disconnect_zeroes_load_and_freezes_the_register_until_reconnect() -> None:
    config = FleetConfig(meters=2, start=START, days=1, per_message=4, seed=1, armed_share=0.0, pv_share=0.0)
    stats = FleetStats(meters=2)
    gen = MessageGenerator(config, LoadModel(1, pv_share=0.0), parse_faults(""), stats)
    bodies: list[dict[str, Any]] = []
    for i, (ts, blocks) in enumerate(gen.steps(threading.Event())):
        for block in blocks:
            bodies += [json.loads(raw) for m, leaf, raw in block.messages if m == 0 and leaf == "readings"]
        if i == 5:
            answer = gen.command(0, b'{"id": "a", "action": "disconnect"}', ts)
            assert json.loads(answer[0][1]) == {"id": "a", "status": "ok", "relay": "disconnected"}
            assert answer[1][0] == "events" and b"relay_open" in answer[1][1]
        if i == 10:
            answer = gen.command(0, b'{"id": "b", "action": "reconnect"}', ts)
            assert json.loads(answer[0][1])["relay"] == "connected"
    values = [[r["value"] for r in b["readings"]] for b in bodies]
    off = values[6:11]
    assert all(v[:4] == [0.0] * 4 for v in off)
    assert len({v[4] for v in off} | {values[5][4]}) == 1  # the register stands still
    assert all(sum(v[:4]) > 0 for v in values[11:])
    # and stays consistent with the intervals across the whole day
    for before, after in itertools.pairwise(values):
        assert round((after[4] - before[4]) * 1000) == round(sum(after[:4]) * 1000)


def test_armed_meter_needs_the_button_and_bad_commands_are_answered() -> None:
    config = FleetConfig(meters=1, start=START, days=0.5, per_message=4, armed_share=1.0)
    gen = MessageGenerator(config, LoadModel(1), parse_faults(""), FleetStats())
    gen.command(0, b'{"id": "a", "action": "disconnect"}', 0)
    assert json.loads(gen.command(0, b'{"id": "b", "action": "reconnect"}', 0)[0][1])["relay"] == "armed"
    steps = gen.steps(threading.Event())
    _ts, blocks = next(steps)
    messages = [msg for block in blocks for msg in block.messages]
    assert any(leaf == "events" and b"relay_closed" in raw and b"button" in raw for _m, leaf, raw in messages)
    assert json.loads(gen.command(0, b'{"id": "c", "action": "read"}', 0)[0][1])["relay"] == "connected"
    assert json.loads(gen.command(0, b'{"id": "d", "action": "explode"}', 0)[0][1])["status"] == "rejected"
    assert gen.command(0, b"not json", 0) == []
