"""Fixtures of the integration tests that need a broker of their own (never the shared one on 1883)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.chaos_services import Mosquitto


@pytest.fixture
def private_broker() -> Iterator[Mosquitto]:
    """A private Mosquitto on a free port, with persistence (sessions and queued QoS 1 messages survive its
    restart: ``stop()`` then ``start()``), no queue limit and a debug log (``.log``) of every PUBLISH and SUBSCRIBE."""
    if shutil.which("mosquitto") is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    root = Path(tempfile.mkdtemp(prefix="amiflow-broker-"))  # outside tmp_path (0700): the broker runs as mosquitto
    root.chmod(0o755)
    broker = Mosquitto(root / "broker", debug_log=True)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(root, ignore_errors=True)
