"""Fault spec parsing and the seeded injector."""

from __future__ import annotations

import json

import numpy as np
import pytest

from amiflow.errors import ConfigError
from simulators.faults import FAULT_KINDS, SPIKE_KWH, FaultInjector, FaultSpec, parse_faults

EXAMPLE = "dup=0.01,reorder=0.01,gap=0.002,malformed=0.001,spike=0.0005,drift=0.01,rollover=0.001,spoof=0.0005"


def test_the_documented_example_parses() -> None:
    spec = parse_faults(EXAMPLE)
    assert spec == FaultSpec(
        dup=0.01, reorder=0.01, gap=0.002, malformed=0.001, spike=0.0005, drift=0.01, rollover=0.001, spoof=0.0005
    )
    assert parse_faults(str(spec)) == spec


@pytest.mark.parametrize("text", ["", "none", "NONE", "  ", None])
def test_empty_spec_is_no_faults(text: str | None) -> None:
    assert parse_faults(text) == FaultSpec()
    assert not parse_faults(text).any


def test_all_sets_every_kind_and_later_items_override() -> None:
    spec = parse_faults("all=0.1, gap=0 ,")
    assert spec.gap == 0.0
    assert all(getattr(spec, k) == 0.1 for k in FAULT_KINDS if k != "gap")


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("dup=0.1,dupe=0.2", "'dupe=0.2'"),
        ("gap", "'gap'"),
        ("spike=lots", "'spike=lots'"),
        ("drift=1.5", "'drift=1.5'"),
        ("rollover=-0.1", "'rollover=-0.1'"),
        ("spoof=nan", "'spoof=nan'"),
    ],
)
def test_a_wrong_item_is_a_config_error_naming_it(text: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        parse_faults(text)


def test_decisions_are_seeded_and_follow_the_rate() -> None:
    spec = parse_faults("gap=0.05")
    a = FaultInjector(spec, 1).hits("gap", np.arange(2000)[:, None], np.arange(50)[None, :])
    b = FaultInjector(spec, 1).hits("gap", np.arange(2000)[:, None], np.arange(50)[None, :])
    c = FaultInjector(spec, 2).hits("gap", np.arange(2000)[:, None], np.arange(50)[None, :])
    assert a.shape == (2000, 50)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert 0.045 < a.mean() < 0.055
    # an item's decision does not depend on what else is decided with it
    assert FaultInjector(spec, 1).hits("gap", 1234, 17) == a[1234, 17]
    assert not FaultInjector(spec, 1).hits("dup", np.arange(100), 3).any()  # rate 0
    with pytest.raises(ConfigError, match="unknown"):
        FaultInjector(spec, 1).hits("gremlins", 1)


def test_faulty_values() -> None:
    inj = FaultInjector(FaultSpec(), 3)
    spikes = inj.spike_kwh(np.arange(1000))
    assert set(np.unique(spikes[spikes > 0])) == {SPIKE_KWH}
    assert (spikes[spikes < 0] <= -0.001).all() and (spikes < 0).any()
    drift = inj.drift_s(np.arange(1000))
    assert (np.abs(drift) >= 7).all() and (np.abs(drift) <= 293).all() and (drift < 0).any() and (drift > 0).any()
    assert list(inj.rollover_wrap_wh([57_699_855.0, 9.0, 1_000.0])) == [50_000_000.0, 0.0, 1_000.0]


def test_malformed_payloads_are_never_valid_readings() -> None:
    inj = FaultInjector(FaultSpec(), 5)
    good = b'{"meter":"M000001","seq":7,"readings":[{"obis":"1-0:1.29.0","ts":"2026-11-01T00:15:00Z","value":0.2}]}'
    variants = {inj.malform(good, i) for i in range(64)}
    assert len(variants) == 4
    for bad in variants:
        try:
            doc = json.loads(bad)
        except ValueError:
            continue
        assert not isinstance(doc.get("readings"), list)
