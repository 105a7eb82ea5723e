"""Commissioning: the value checks at once (pure) and the commissioning flow against an in-memory meter."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import numpy as np

from amiflow.errors import ConnectError
from amiflow.types import ReadingBatch
from amiflow.uri import MeterUri, parse_meter_uri
from ingest.commissioning import commission, plausibility

GOOD = {"1-0:32.7.0": 231.0, "1-0:31.7.0": 4.0, "1-0:1.7.0": 850.0, "1-0:1.8.0": 1000.0}


def _status(checks: list[Any]) -> dict[str, str]:
    return {c.name: c.status for c in checks}


def test_plausible_values_pass() -> None:
    assert _status(plausibility(GOOD, {**GOOD, "1-0:1.8.0": 1000.5}, 1.0)) == {
        "voltage": "pass",
        "frequency": "skip",
        "power_factor": "skip",
        "current": "pass",
        "power": "pass",
        "phase_sequence": "skip",
        "direction": "pass",
        "monotonic": "pass",
        "ct_ratio": "pass",
        "vt_ratio": "pass",
    }


def test_each_implausible_value_fails_its_check() -> None:
    assert _status(plausibility({**GOOD, "1-0:32.7.0": 190.0}, GOOD, 1.0))["voltage"] == "fail"
    assert _status(plausibility({**GOOD, "1-0:1.7.0": 5000.0}, GOOD, 1.0))["power"] == "fail"
    assert _status(plausibility(GOOD, {**GOOD, "1-0:1.8.0": 999.0}, 1.0))["monotonic"] == "fail"
    assert _status(plausibility(GOOD, GOOD, 0.5))["ct_ratio"] == "fail"
    # a CT meter: 700 A primary through a 100:1 CT is 7 A secondary, beyond a 5 A CT's 6 A
    assert _status(plausibility({**GOOD, "1-0:31.7.0": 700.0, "1-0:1.7.0": 1000.0}, GOOD, 100.0))["current"] == "fail"
    assert _status(plausibility({}, {}, 1.0)) == {
        "voltage": "skip",
        "frequency": "skip",
        "power_factor": "skip",
        "current": "skip",
        "power": "skip",
        "phase_sequence": "skip",
        "direction": "skip",
        "monotonic": "skip",
        "ct_ratio": "pass",
        "vt_ratio": "pass",
    }


class Meter:
    def __init__(self, clock_offset_s: float = 0.0, down: bool = False) -> None:
        self.offset = clock_offset_s
        self.down = down
        self.has_profile = True
        self.register = 1000.0

    async def __aenter__(self) -> Meter:
        if self.down:
            raise ConnectError("meter M: association refused (authentication failure)")
        return self

    async def __aexit__(self, *exc: Any) -> None:
        return None

    async def identify(self) -> dict[str, Any]:
        return {"serial": "SN123", "manufacturer": "ACME"}

    async def read_clock(self) -> datetime:
        return datetime.fromtimestamp(1_800_000_000 + self.offset, UTC)

    async def set_clock(self, when: datetime) -> None:
        self.offset = 0.0

    async def read_registers(self, at: datetime) -> ReadingBatch:
        self.register += 0.2
        obis = np.array(list(GOOD), dtype=object)
        values = [GOOD[o] for o in obis[:-1]] + [self.register]
        return ReadingBatch.from_columns("M", obis, [1] * 4, values, unit="")


def _run(meter: Meter, **kw: Any) -> Any:
    def factory(name: str, uri: MeterUri, timeout_s: float) -> Meter:
        return meter

    return asyncio.run(
        commission(
            parse_meter_uri("dlms+tcp://127.0.0.1:4059"),
            session_factory=factory,  # type: ignore[arg-type]
            clock=lambda: 1_800_000_000.0,
            pause_s=0.0,
            **kw,
        )
    )


def test_a_good_meter_passes_and_a_drifting_clock_fails_unless_synced() -> None:
    report = _run(Meter())
    assert report.passed and report.identity["serial"] == "SN123"
    drifting = _run(Meter(clock_offset_s=120))
    assert not drifting.passed and _status(drifting.checks)["clock"] == "fail"
    synced = _run(Meter(clock_offset_s=120), sync_clock=True)
    assert synced.passed and "set" in next(c.detail for c in synced.checks if c.name == "clock")


def test_an_unreachable_meter_fails_with_the_cause() -> None:
    report = _run(Meter(down=True))
    assert not report.passed
    assert report.checks[-1].name == "connect" and "association refused" in report.checks[-1].detail
