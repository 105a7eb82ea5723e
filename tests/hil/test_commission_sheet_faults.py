"""Each check of the commissioning sheet fails on the simulator fault made for it, end to end over TCP or a pty
(issue 18): a reversed CT on L2, swapped phases, low voltage, off frequency, low PF, overload, a power that V x I
cannot carry, a register counting down, clock drift, a CT/VT ratio held that the installation does not have, an open
relay, a blank serial, a wrong Modbus unit id, a slow and a lossy link."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from amiflow.uri import parse_meter_uri
from ingest.commissioning import CommissioningReport, Limits, commission
from simulators.dlms import DlmsSimulator
from simulators.iec62056_21 import IecSimulator
from simulators.modbus import ModbusSimulator

TCP = "tcp://127.0.0.1:0"


async def _run(sim: Any, uri: str | None = None, **kw: Any) -> CommissioningReport:
    await sim.start()
    try:
        return await commission(parse_meter_uri(uri or sim.uri), meter="HIL", timeout_s=1.0, pause_s=0.2, **kw)
    finally:
        await sim.stop()


def _commission(sim: Any, uri: str | None = None, **kw: Any) -> CommissioningReport:
    return asyncio.run(_run(sim, uri, **kw))


def _check(report: CommissioningReport, name: str) -> Any:
    found = [c for c in report.checks if c.name == name]
    assert found, f"no {name} check in {[c.name for c in report.checks]}"
    return found[0]


def _only_failures(report: CommissioningReport) -> set[str]:
    return {c.name for c in report.named("fail")}


def test_a_healthy_three_phase_dlms_meter_passes_every_check() -> None:
    report = _commission(DlmsSimulator(TCP, phases=3))
    assert report.verdict == "PASS", report.verdict_line()
    for name in ("voltage", "frequency", "power_factor", "current", "phase_sequence", "direction", "relay", "link"):
        assert _check(report, name).status == "pass", _check(report, name)
    assert "L1-L2-L3" in _check(report, "phase_sequence").detail
    energy = report.quantity("1-0:1.8.0")
    assert energy is not None and energy.unit == "Wh" and energy.meter_unit == "Wh" and "scaler" in energy.scaling


@pytest.mark.parametrize(
    ("wiring", "check", "words"),
    [
        ("reversed_ct=2", "direction", "L2 exports while L1, L3 import"),
        ("phase_order=132", "phase_sequence", "L1-L3-L2"),
        ("voltage=195", "voltage", "below the range"),
        ("frequency=51.2", "frequency", "51.20 Hz above"),
        ("pf=0.4", "power_factor", "0.40 below the minimum"),
        ("current=150", "current", "150.00 A above Imax"),
        ("current=0.01", "power", "> V*I"),
        ("register=down", "monotonic", "1-0:1.8.0 decreased"),
        ("relay=open", "relay", "open (disconnected)"),
        ("vt_ratio=11000/110", "vt_ratio", "holds 11000/110 = 100"),
    ],
)
def test_each_installation_fault_fails_its_check(wiring: str, check: str, words: str) -> None:
    report = _commission(DlmsSimulator(TCP, phases=3, wiring=wiring))
    found = _check(report, check)
    assert found.status == "fail" and words in found.detail, found
    assert report.verdict.startswith("FAIL") and check in report.verdict_line()
    assert _only_failures(report) == {check}, report.verdict_line()


def test_the_ct_ratio_given_is_compared_with_the_one_the_meter_holds() -> None:
    held = "ct_ratio=200/5"
    wrong = _commission(DlmsSimulator(TCP, phases=3, wiring=held), ct_ratio=20.0)
    assert _check(wrong, "ct_ratio").status == "fail" and "given 20" in _check(wrong, "ct_ratio").detail
    right = _commission(DlmsSimulator(TCP, phases=3, wiring=held), limits=Limits().with_changes(ct_ratio="200/5"))
    assert _check(right, "ct_ratio").status == "pass" and right.passed


def test_clock_drift_fails_and_sync_clock_sets_it() -> None:
    drifting = _commission(DlmsSimulator(TCP, faults="clock_drift=600"))
    assert _check(drifting, "clock").status == "fail" and "+600" in _check(drifting, "clock").detail

    async def run() -> CommissioningReport:  # the public client may not SET: the management client may
        sim = DlmsSimulator(TCP, faults="clock_drift=600")
        await sim.start()
        try:
            uri = parse_meter_uri(f"{sim.uri}?client=1")
            return await commission(uri, meter="HIL", timeout_s=1.0, pause_s=0.1, sync_clock=True)
        finally:
            await sim.stop()

    report = asyncio.run(run())
    assert _check(report, "clock").status == "pass" and "set; now" in _check(report, "clock").detail
    refused = _commission(DlmsSimulator(TCP, faults="clock_drift=600"), sync_clock=True)
    clock = _check(refused, "clock")
    assert clock.status == "fail" and "setting the clock failed" in clock.detail and "denied" in clock.detail, clock


def test_a_blank_serial_fails_identify() -> None:
    report = _commission(DlmsSimulator(TCP, meter=" "))
    assert _check(report, "identify").status == "fail"


def test_modbus_sdm630_reversed_ct_and_the_phase_sequence_it_cannot_tell() -> None:
    report = _commission(ModbusSimulator(TCP, map_name="sdm630", wiring="reversed_ct=2"))
    assert _check(report, "direction").status == "fail" and "L2" in _check(report, "direction").detail
    sequence = _check(report, "phase_sequence")
    assert sequence.status == "skip" and "phase-sequence tester" in sequence.detail
    assert _check(report, "relay").detail.startswith("n/a (no relay)")
    kwh = report.quantity("1-0:1.8.0")
    assert kwh is not None and kwh.meter_unit == "kWh" and kwh.unit == "Wh"
    assert kwh.value == pytest.approx(kwh.meter_value * 1000)


def test_modbus_breaker_relay_open_fails_and_closed_passes() -> None:
    closed = _commission(ModbusSimulator(TCP, map_name="sdm630+breaker"))
    assert _check(closed, "relay").status == "pass" and "holding register 4096 = 1" in _check(closed, "relay").detail
    opened = _commission(ModbusSimulator(TCP, map_name="sdm630+breaker", wiring="relay=open"))
    assert _check(opened, "relay").status == "fail"


def test_modbus_map_with_ct_registers_is_compared(tmp_path: Path) -> None:
    path = tmp_path / "ct_meter.csv"
    path.write_text(
        "address,function_code,name,type,registers,unit,scale,obis,access,description\n"
        "0,4,l1_voltage,float32,2,V,1,1-0:32.7.0,R,\n"
        "6,4,l1_current,float32,2,A,1,1-0:31.7.0,R,\n"
        "12,4,l1_power_active,float32,2,W,1,1-0:21.7.0,R,\n"
        "52,4,total_power_active,float32,2,W,1,1-0:1.7.0,R,\n"
        "72,4,import_energy_active,float32,2,kWh,1,1-0:1.8.0,R,\n"
        "100,3,ct_primary,float32,2,,1,,R,\n"
        "102,3,ct_secondary,float32,2,,1,,R,\n"
    )
    report = _commission(ModbusSimulator(TCP, map_name=str(path), wiring="ct_ratio=400/5"), ct_ratio=40.0)
    found = _check(report, "ct_ratio")
    assert found.status == "fail" and "holds 400/5 = 80" in found.detail, found


def test_a_wrong_modbus_unit_id_says_so() -> None:
    sim = ModbusSimulator(TCP, map_name="sdm630", unit=1)

    async def run() -> CommissioningReport:
        await sim.start()
        try:
            uri = parse_meter_uri(f"modbus+tcp://127.0.0.1:{sim.port}?unit=3&map=sdm630")
            return await commission(uri, meter="HIL", timeout_s=1.0, pause_s=0.1)
        finally:
            await sim.stop()

    failed = asyncio.run(run())
    reason = "; ".join(c.detail for c in failed.named("fail"))
    assert "no answer from unit 3: check the unit id (the meter's address), baud and wiring" in reason, reason


def test_a_slow_link_warns_and_a_lossy_one_fails() -> None:
    slow = _commission(ModbusSimulator(TCP, map_name="sdm120", faults="delay=0.6"))
    assert _check(slow, "link").status == "warn" and slow.verdict == "PASS WITH WARNINGS", slow.verdict_line()
    lossy = _commission(ModbusSimulator(TCP, map_name="sdm120", faults="timeout=0.4", seed=3))
    link = _check(lossy, "link")
    assert link.status == "fail" and "lossy or slow" in link.detail and lossy.link.retries > 0, link


def test_iec_low_voltage_fails_with_the_units_the_readout_states() -> None:
    report = _commission(IecSimulator(TCP, wiring="voltage=190"))
    assert _check(report, "voltage").status == "fail"
    kwh = report.quantity("1-0:1.8.0")
    assert kwh is not None and kwh.meter_unit == "kWh" and "as written" in kwh.scaling


def test_mqtt_meters_are_refused_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "AMIFLOW_DATA_DIR": str(tmp_path)}
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("amiflow")), "commission", "mqtt://M1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "no link to commission them over" in lines[0], proc.stderr
