"""The commissioning report: what was read, every check with its outcome, the link's quality and the verdict.

A check is ``pass``, ``warn`` (it passes, but someone should look), ``fail`` or ``skip`` (with the reason). The
verdict is FAIL when any check failed, PASS WITH WARNINGS when any warned, else PASS. ``to_json`` holds every value
and check (the stored report, ``--format json``, and the meter registry's ``commissioning`` column).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ingest.meter_quantities import Quantity, RelayState

__all__ = ["STATUSES", "Check", "CommissioningReport", "LinkQuality"]

STATUSES = ("pass", "warn", "fail", "skip")


@dataclass(frozen=True, slots=True)
class Check:
    """One check: ``name``, ``status`` (pass | warn | fail | skip), what was found, and the range it was held to."""

    name: str
    status: str
    detail: str
    limit: str = ""


@dataclass(frozen=True, slots=True)
class LinkQuality:
    """The reads of a commissioning: attempts (first tries and retries), retries, failures, latency of the reads."""

    attempts: int = 0
    retries: int = 0
    failures: int = 0
    reopened: int = 0
    median_latency_s: float | None = None
    max_latency_s: float | None = None


@dataclass(slots=True)
class CommissioningReport:
    """Everything a commissioning found; ``passed`` is True when no check failed and the registers were read."""

    uri: str
    meter: str | None
    started_at: str
    protocol: str = ""
    identity: dict[str, Any] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)
    quantities: list[Quantity] = field(default_factory=list)
    relay: RelayState | None = None
    checks: list[Check] = field(default_factory=list)
    clock_offset_s: float | None = None
    meter_clock: str | None = None
    link: LinkQuality = field(default_factory=LinkQuality)
    limits: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.status != "fail" for c in self.checks) and any(c.name == "read" for c in self.checks)

    @property
    def verdict(self) -> str:
        """PASS, PASS WITH WARNINGS or FAIL."""
        if not self.passed:
            return "FAIL"
        return "PASS WITH WARNINGS" if any(c.status == "warn" for c in self.checks) else "PASS"

    def named(self, status: str) -> list[Check]:
        return [c for c in self.checks if c.status == status]

    def verdict_line(self) -> str:
        """``FAIL (voltage, direction)``: the verdict with the failing (or warning) checks named."""
        failed = self.named("fail") or ([] if self.passed else [Check("read", "fail", "the registers were not read")])
        named = failed or self.named("warn")
        return self.verdict + (f" ({', '.join(c.name for c in named)})" if named else "")

    def quantity(self, obis: str) -> Quantity | None:
        return next((q for q in self.quantities if q.obis == obis), None)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["passed"] = self.passed
        out["verdict"] = self.verdict
        return out
