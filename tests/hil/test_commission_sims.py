"""`amiflow commission` against the protocol simulators over TCP and a pty: passes on a healthy meter, and fails with
a clear reason on each injected link fault (issue 4's done-when); the installation faults of the sheet's checks are
in test_commission_sheet_faults.py (issue 18)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from amiflow.uri import parse_meter_uri
from ingest.commissioning import CommissioningReport, commission
from simulators.dlms import DlmsSimulator
from simulators.iec62056_21 import IecSimulator
from simulators.modbus import ModbusSimulator


async def _commission(sim: Any, **kw: Any) -> CommissioningReport:
    await sim.start()
    try:
        return await commission(parse_meter_uri(sim.uri), meter="HIL1", timeout_s=1.0, **kw)
    finally:
        await sim.stop()


def _failed(report: CommissioningReport) -> str:
    return "; ".join(f"{c.name}: {c.detail}" for c in report.checks if c.status == "fail")


@pytest.mark.parametrize("listen", ["tcp://127.0.0.1:0", "pty"])
@pytest.mark.parametrize("map_name", ["sdm630", "sunspec"])
def test_modbus_meter_passes(listen: str, map_name: str) -> None:
    if listen == "pty" and map_name == "sunspec":
        pytest.skip("one map over the pty is enough (RTU framing is map-independent)")
    report = asyncio.run(_commission(ModbusSimulator(listen, map_name=map_name)))
    assert report.passed, _failed(report)
    assert report.identity.get("serial") and report.values
    assert {c.name for c in report.checks} >= {"connect", "identify", "read", "voltage", "power", "monotonic"}


@pytest.mark.parametrize("listen", ["tcp://127.0.0.1:0", "pty"])
def test_iec62056_21_meter_passes(listen: str) -> None:
    report = asyncio.run(_commission(IecSimulator(listen)))
    assert report.passed, _failed(report)
    assert report.identity.get("serial")


@pytest.mark.parametrize(
    ("fault", "words"), [("timeout=1", "timeout"), ("exception=1", "exception"), ("corrupt=1", ""), ("truncate=1", "")]
)
def test_modbus_faults_fail_with_a_reason(fault: str, words: str) -> None:
    listen = "pty" if fault in ("corrupt=1", "truncate=1") else "tcp://127.0.0.1:0"
    report = asyncio.run(_commission(ModbusSimulator(listen, faults=fault)))
    assert not report.passed
    reason = _failed(report)
    assert reason and words.lower() in reason.lower(), reason


@pytest.mark.parametrize("fault", ["timeout", "bad_bcc", "truncate", "garbage"])
def test_iec62056_21_faults_fail_with_a_reason(fault: str) -> None:
    report = asyncio.run(_commission(IecSimulator("tcp://127.0.0.1:0", faults=[fault])))
    assert not report.passed
    assert _failed(report)


def test_iec62056_21_clock_drift_fails_the_clock_check() -> None:
    sim = IecSimulator("tcp://127.0.0.1:0", drift_s=600.0)
    report = asyncio.run(_commission(sim))
    clock = next((c for c in report.checks if c.name == "clock"), None)
    if clock is None or clock.status == "skip":
        pytest.skip("the IEC simulator's readout carries no clock lines")
    assert clock.status == "fail" and "drift" in clock.detail


@pytest.mark.parametrize("listen", ["tcp://127.0.0.1:0", "pty"])
def test_three_phase_dlms_meter_passes_with_every_phase_judged(listen: str) -> None:
    report = asyncio.run(_commission(DlmsSimulator(listen, phases=3)))
    assert report.verdict == "PASS", report.verdict_line()
    judged = {c.name for c in report.checks if c.status == "pass"}
    assert judged >= {"voltage", "frequency", "power_factor", "current", "phase_sequence", "direction", "relay"}


def test_a_wrong_unit_id_on_an_rtu_line_times_out_with_the_hint() -> None:
    async def run() -> CommissioningReport:
        sim = ModbusSimulator("pty", map_name="sdm120", unit=1)
        await sim.start()
        try:
            uri = parse_meter_uri(f"modbus+rtu://{sim.path}?unit=3&map=sdm120")
            return await commission(uri, meter="HIL1", timeout_s=0.5, pause_s=0.1)
        finally:
            await sim.stop()

    report = asyncio.run(run())
    reason = _failed(report)
    assert "no answer from unit 3: check the unit id (the meter's address), baud and wiring" in reason, reason
