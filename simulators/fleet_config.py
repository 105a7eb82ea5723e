"""What a fleet run is asked for (:class:`FleetConfig`, the options of ``amiflow sim mqtt``) and what it published
(:class:`FleetStats`). The message generator (:mod:`simulators.fleet_messages`) and the MQTT side
(:mod:`simulators.mqtt_fleet`) both stand on these two; pure data, no I/O.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from amiflow.errors import ConfigError
from simulators.faults import parse_faults
from simulators.load import REFERENCE_TS

__all__ = ["FleetConfig", "FleetStats"]


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetConfig:
    """The options of ``amiflow sim mqtt`` (see ``--help``); ``start`` is an aware datetime on an interval boundary."""

    meters: int
    start: datetime
    days: float = 1.0
    interval_s: int = 900
    speed: float = 0.0
    seed: int = 1
    faults: str = ""
    prefix: str = "ami/v1"
    per_message: int = 96
    meter_prefix: str = "M"
    stats_path: Path | None = None
    pv_share: float = 0.2
    commercial_share: float = 0.2
    armed_share: float = 0.1
    outages_per_day: float = 0.01
    connections: int = 0  # 0 = one per meter up to 100 meters, else 8
    window: int = 1000
    max_backlog: int = 200_000
    linger_s: float = 0.0
    client_id: str = "amiflow-sim"

    def __post_init__(self) -> None:
        if not 1 <= self.meters <= 1_000_000:
            raise ConfigError(f"--meters {self.meters}: must be 1 to 1,000,000")
        if self.start.tzinfo is None:
            raise ConfigError("--start: give an offset or Z (for example 2026-11-01T00:00:00Z)")
        if self.interval_s <= 0 or 86_400 % self.interval_s:
            raise ConfigError(f"--interval {self.interval_s}: must divide a day (900, 300, 3600, ...)")
        if int(self.start.timestamp()) % self.interval_s:
            raise ConfigError(f"--start {self.start.isoformat()}: must be on a {self.interval_s} s interval boundary")
        if int(self.start.timestamp()) < REFERENCE_TS:
            raise ConfigError("--start: must be on or after 2000-01-01")
        if not self.days > 0:
            raise ConfigError(f"--days {self.days}: must be positive")
        if self.speed < 0:
            raise ConfigError(f"--speed {self.speed}: 0 (as fast as possible), 1 (real time) or more")
        if not 1 <= self.per_message <= 35_136:
            raise ConfigError(f"--per-message {self.per_message}: must be 1 to 35136 (a leap year of intervals)")
        if not 1 <= self.window <= 60_000:
            raise ConfigError(f"window {self.window}: must be 1 to 60000 (paho tracks at most 65535 in flight)")
        if not self.prefix or "+" in self.prefix or "#" in self.prefix:
            raise ConfigError(f"--prefix {self.prefix!r}: a topic prefix without wildcards")
        parse_faults(self.faults)  # a wrong spec fails here, naming the bad item

    @property
    def start_ts(self) -> int:
        """``start`` as epoch seconds."""
        return int(self.start.timestamp())

    @property
    def intervals(self) -> int:
        """Number of intervals the run covers."""
        return max(1, round(self.days * 86_400 / self.interval_s))

    def meter_name(self, index: int) -> str:
        """The name of meter ``index`` (0-based): ``M000001`` for 0."""
        return f"{self.meter_prefix}{index + 1:06d}"


@dataclass(slots=True)
class FleetStats:
    """What a run published. Readings count one value each; ``faults`` counts occurrences per fault kind.

    ``readings_expected`` are the distinct valid readings a correct head-end stores; ``readings_duplicate`` the
    readings of re-published (``dup``) messages; ``readings_quarantined`` spikes and spoofed readings. Malformed
    messages carry no countable readings (``readings_lost`` says how many they replaced) and are counted in
    ``messages_quarantined`` with the spoofed ones. ``readings_flagged`` are stored with a flag (rolled-over registers).
    """

    meters: int = 0
    messages: int = 0
    readings_published: int = 0
    readings_expected: int = 0
    readings_duplicate: int = 0
    readings_quarantined: int = 0
    readings_flagged: int = 0
    readings_lost: int = 0
    intervals_gapped: int = 0
    messages_quarantined: int = 0
    event_messages: int = 0
    events: int = 0
    status_messages: int = 0
    command_results: int = 0
    reconnects: int = 0
    max_backlog: int = 0
    first_ts: int = 0
    last_ts: int = 0
    elapsed_s: float = 0.0
    faults: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (what ``--stats FILE`` writes)."""
        return asdict(self)
