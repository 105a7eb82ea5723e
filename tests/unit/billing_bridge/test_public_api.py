"""The package's public API: sorted ``__all__`` lists whose every name resolves (issue 11)."""

from __future__ import annotations

import importlib

import pytest

PACKAGES = ("billing_bridge", "billing_bridge.policy")


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_resolves(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported)
    assert len(set(exported)) == len(exported)
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name} exports names it does not define: {missing}"


def test_the_collections_entry_points_are_exported() -> None:
    import billing_bridge
    from billing_bridge.collections_run import run_collections
    from billing_bridge.dispatcher import build_dispatcher

    assert billing_bridge.run_collections is run_collections
    assert billing_bridge.build_dispatcher is build_dispatcher
