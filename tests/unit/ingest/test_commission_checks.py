"""The commissioning sheet's pure parts: each check against its stated range, the limits and profiles, the verdict,
the retried and timed link, and the sheet as a table, JSON, HTML and PDF."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from amiflow.errors import ConfigError, ProtocolError, ReadTimeout
from amiflow.uri import MeterUri, parse_meter_uri
from ingest.commissioning import (
    Check,
    CommissioningReport,
    Limits,
    LinkQuality,
    load_limits,
    parse_ratio,
    plausibility,
    render_html,
    render_pdf,
    render_table,
)
from ingest.commissioning.checks import link_check
from ingest.commissioning.link import MeasuredLink, no_answer_hint
from ingest.commissioning.phases import phase_picture
from ingest.commissioning.sheet import display_value
from ingest.commissioning.wiring import relay_check
from ingest.meter_quantities import Quantity, RelayState

THREE_PHASE = {
    "1-0:32.7.0": 231.0,
    "1-0:52.7.0": 229.0,
    "1-0:72.7.0": 230.0,
    "1-0:31.7.0": 4.0,
    "1-0:51.7.0": 4.1,
    "1-0:71.7.0": 3.9,
    "1-0:21.7.0": 900.0,
    "1-0:41.7.0": 910.0,
    "1-0:61.7.0": 880.0,
    "1-0:33.7.0": 0.97,
    "1-0:53.7.0": 0.96,
    "1-0:73.7.0": 0.98,
    "1-0:14.7.0": 50.02,
    "1-0:81.7.10": 120.0,
    "1-0:81.7.20": 240.0,
    "1-0:1.7.0": 2690.0,
    "1-0:1.8.0": 154452750.0,
}


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def _checks(values: dict[str, float], limits: Limits | None = None, ct: float = 1.0) -> dict[str, Check]:
    return _by_name(plausibility(values, values, ct, limits, relay=RelayState(True, True, "connected", "test")))


def test_a_good_three_phase_meter_passes_everything() -> None:
    checks = _checks(THREE_PHASE)
    assert {n: c.status for n, c in checks.items() if c.status != "pass"} == {}
    assert "L1-L2-L3" in checks["phase_sequence"].detail
    assert checks["voltage"].limit == "207.0-253.0 V (230 V +/-10 %, EN 50160)"


@pytest.mark.parametrize(
    ("change", "check", "words"),
    [
        ({"1-0:52.7.0": 200.0}, "voltage", "L2 200.0 V below"),
        ({"1-0:14.7.0": 49.3}, "frequency", "49.30 Hz below"),
        ({"1-0:73.7.0": -0.3}, "power_factor", "L3 0.30 below"),
        ({"1-0:41.7.0": 0.0, "1-0:42.7.0": 910.0}, "direction", "L2 exports while L1, L3 import"),
        ({"1-0:41.7.0": -910.0}, "direction", "reversed CT or swapped current leads on L2"),
        ({"1-0:81.7.10": 240.0, "1-0:81.7.20": 120.0}, "phase_sequence", "L1-L3-L2"),
        ({"1-0:81.7.10": 60.0}, "phase_sequence", "no valid sequence"),
        ({"1-0:71.7.0": 101.0}, "current", "L3 101.00 A above Imax"),
        ({"1-0:0.4.2": 200.0, "1-0:0.4.5": 5.0}, "ct_ratio", "the meter holds 200/5 = 40"),
        ({"1-0:0.4.3": 11000.0, "1-0:0.4.6": 110.0}, "vt_ratio", "the meter holds 11000/110 = 100"),
    ],
)
def test_each_fault_fails_its_check_alone(change: dict[str, float], check: str, words: str) -> None:
    checks = _checks({**THREE_PHASE, **change})
    assert checks[check].status == "fail" and words in checks[check].detail, checks[check]
    assert [n for n, c in checks.items() if c.status == "fail"] == [check]


def test_sixty_hertz_and_other_ranges_come_from_the_limits() -> None:
    sixty = Limits(nominal_frequency_hz=60.0)
    assert _checks({**THREE_PHASE, "1-0:14.7.0": 60.1}, sixty)["frequency"].status == "pass"
    assert _checks(THREE_PHASE, sixty)["frequency"].status == "fail"
    us = Limits(nominal_voltage_v=120.0, nominal_frequency_hz=60.0)
    assert _checks(THREE_PHASE, us)["voltage"].limit.startswith("108.0-132.0 V")
    assert _checks(THREE_PHASE, Limits(min_power_factor=0.99))["power_factor"].status == "fail"
    assert _checks(THREE_PHASE, Limits(imax_a=4.0))["current"].status == "fail"


def test_imax_follows_the_model_and_the_ct_ratio() -> None:
    assert Limits().imax_for("SDM120") == (45.0, "SDM120 Imax")
    assert Limits().imax_for("AMF-SIM") == (100.0, "default Imax")
    assert Limits(ct_ratio=40.0).imax_for("SDM630")[0] == 240.0
    assert Limits(imax_a=63.0).imax_for("SDM630") == (63.0, "given")


def test_all_phases_exporting_warns_and_idle_phases_are_not_judged() -> None:
    exporting = {**THREE_PHASE, "1-0:21.7.0": -900.0, "1-0:41.7.0": -910.0, "1-0:61.7.0": -880.0}
    assert _checks(exporting)["direction"].status == "warn"
    idle = {**THREE_PHASE, "1-0:21.7.0": 0.0, "1-0:41.7.0": 1.0, "1-0:61.7.0": 0.0}
    assert _checks(idle)["direction"].status == "skip"
    assert (
        _checks(idle)["power_factor"].status == "skip"
        and "no phase carries load" in _checks(idle)["power_factor"].detail
    )


def test_the_ratio_given_must_match_the_ratio_held() -> None:
    held = {**THREE_PHASE, "1-0:0.4.2": 200.0, "1-0:0.4.5": 5.0}
    assert _checks(held, ct=40.0)["ct_ratio"].status == "pass"
    assert _checks(held, ct=parse_ratio("200/5"))["ct_ratio"].status == "pass"
    assert parse_ratio("11000/110") == 100.0
    with pytest.raises(ConfigError):
        parse_ratio("200/0")
    with pytest.raises(ConfigError):
        parse_ratio("0.5")


def test_relay_states() -> None:
    closed = Limits()
    assert relay_check(RelayState(False, detail="no object"), closed).detail.startswith("n/a (no relay)")
    assert relay_check(RelayState(True, False, "disconnected", "x"), closed).status == "fail"
    armed = relay_check(RelayState(True, False, "ready_for_reconnection", "x"), closed)
    assert armed.status == "fail" and "ready_for_reconnection" in armed.detail
    assert relay_check(RelayState(True, False, "disconnected", "x"), Limits(relay_expected="open")).status == "pass"
    assert relay_check(RelayState(True, True, "connected", "x"), Limits(relay_expected="any")).status == "pass"


def test_link_quality_warns_on_retries_and_fails_when_lossy_or_slow() -> None:
    lim = Limits()
    assert link_check(LinkQuality(10, 0, 0, 0, 0.01, 0.05), lim).status == "pass"
    assert link_check(LinkQuality(10, 1, 1, 1, 0.01, 0.05), lim).status == "warn"
    assert link_check(LinkQuality(10, 0, 0, 0, 0.01, 0.9), lim).status == "warn"
    assert link_check(LinkQuality(10, 4, 4, 4, 0.01, 0.05), lim).status == "fail"
    assert link_check(LinkQuality(10, 0, 0, 0, 2.5, 3.0), lim).status == "fail"
    assert link_check(LinkQuality(), lim).status == "skip"


def test_a_profile_sets_the_limits_and_rejects_unknown_keys(tmp_path: Path) -> None:
    good = tmp_path / "site.toml"
    good.write_text('[commissioning]\nnominal_frequency_hz = 60\nct_ratio = "400/5"\nmin_power_factor = 0.8\n')
    limits = load_limits(good)
    assert (limits.nominal_frequency_hz, limits.ct_ratio, limits.min_power_factor) == (60.0, 80.0, 0.8)
    bad = tmp_path / "bad.toml"
    bad.write_text("nominal_voltage = 230\n")
    with pytest.raises(ConfigError, match="nominal_voltage"):
        load_limits(bad)
    with pytest.raises(ConfigError, match="relay_expected"):
        Limits(relay_expected="maybe")


def test_display_units_show_the_scaling() -> None:
    assert display_value(154452750.0, "Wh") == "154452.750 kWh"
    assert display_value(230.44, "V") == "230.4 V"
    assert display_value(0.97, "") == "0.970"
    assert display_value(40.0, "", ratio=True) == "40"


def _report() -> CommissioningReport:
    report = CommissioningReport("dlms+tcp://127.0.0.1:4059", "M1", "2026-01-01T00:00:00+00:00", protocol="DLMS/COSEM")
    report.identity = {"serial": "SN1", "manufacturer": "ACME", "model": "X3", "firmware": "1.0"}
    report.quantities = [
        Quantity(code, value, "Wh" if code == "1-0:1.8.0" else "", value, "Wh", "raw x 10^0 (scaler_unit)")
        for code, value in THREE_PHASE.items()
    ]
    report.values = dict(THREE_PHASE)
    report.checks = [Check("connect", "pass", "ok"), Check("read", "pass", "17 values read")]
    report.checks += plausibility(THREE_PHASE, THREE_PHASE, 1.0, relay=RelayState(True, False, "disconnected", "x"))
    report.link = LinkQuality(6, 1, 1, 1, 0.012, 0.8)
    report.limits = Limits().to_json()
    return report


def test_the_verdict_names_the_failing_checks_and_the_outputs_carry_everything() -> None:
    report = _report()
    assert report.verdict == "FAIL" and report.verdict_line() == "FAIL (relay)"
    table = render_table(report)
    assert "1-0:1.8.0" in table and "154452.750 kWh" in table and "154452750 Wh" in table
    assert "FAIL (relay)" in table and "L1-L2-L3" in table
    assert max(len(line) for line in table.splitlines()) < 200  # long findings wrap
    body = json.loads(json.dumps(report.to_json(), default=str))
    assert body["verdict"] == "FAIL" and body["link"]["retries"] == 1 and len(body["quantities"]) == len(THREE_PHASE)
    assert {c["name"] for c in body["checks"]} >= {"voltage", "direction", "ct_ratio", "relay"}
    html = render_html(report)
    assert html.startswith("<!doctype html>") and 'lang="en"' in html and '<th scope="col">' in html
    assert "Verdict: FAIL (relay)" in html and "<script" not in html
    pdf = render_pdf(report)
    assert pdf.startswith(b"%PDF") and len(pdf) > 1000
    report.checks = [c for c in report.checks if c.name != "relay"]
    assert report.verdict == "PASS"


class _Flaky:
    """A session whose first ``failures`` calls time out (a fresh one is built per open)."""

    calls = 0

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.has_profile = False

    async def __aenter__(self) -> _Flaky:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        return None

    async def identify(self) -> dict[str, Any]:
        _Flaky.calls += 1
        if _Flaky.calls <= self.failures:
            raise self.error
        return {"serial": "S"}


def _identify(failures: int, error: Exception, uri: str = "dlms+tcp://127.0.0.1:1") -> tuple[Any, LinkQuality]:
    _Flaky.calls = 0

    def factory(name: str, meter_uri: MeterUri, timeout_s: float) -> Any:
        return _Flaky(failures, error)

    async def run() -> tuple[Any, LinkQuality]:
        link = MeasuredLink(factory, "M", parse_meter_uri(uri), 1.0, 2)
        async with link:
            try:
                return await link.call("identify", lambda s: s.identify()), link.quality()
            except ReadTimeout as exc:
                return exc, link.quality()
            except ProtocolError as exc:
                return exc, link.quality()

    return asyncio.run(run())


def test_the_link_retries_on_a_new_session_and_counts() -> None:
    result, quality = _identify(2, ReadTimeout("no answer"))
    assert result == {"serial": "S"}
    assert (quality.attempts, quality.retries, quality.failures, quality.reopened) == (3, 2, 2, 2)
    assert quality.median_latency_s is not None


def test_a_modbus_unit_that_never_answers_gets_the_unit_id_hint() -> None:
    refused = ProtocolError("modbus+tcp://h:502?unit=3: FC3 64512+2 refused: exception 4 (server device failure)")
    result, quality = _identify(9, refused, "modbus+tcp://127.0.0.1:1?unit=3&map=sdm630")
    assert isinstance(result, ProtocolError) and quality.attempts == 3
    assert str(result).startswith("no answer from unit 3: check the unit id (the meter's address), baud and wiring")
    assert "exception 4 (server device failure)" in str(result)
    assert no_answer_hint(parse_meter_uri("dlms+tcp://h:1"), ReadTimeout("x")) is None


def test_phase_picture_of_a_single_phase_meter_uses_the_totals() -> None:
    phases = phase_picture({"1-0:32.7.0": 230.0, "1-0:31.7.0": 2.0, "1-0:1.7.0": 400.0, "1-0:13.7.0": 0.9})
    assert len(phases) == 1 and phases[0].power_w == 400.0 and phases[0].power_factor == 0.9
