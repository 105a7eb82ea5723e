"""Pure parts of ``amiflow demo``: which month to simulate, which tariff each simulated meter gets, the region and
collector of each account, the summary text.

No I/O and no clock: the caller passes ``today``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

__all__ = [
    "COLLECTORS",
    "REGIONS",
    "DemoPlan",
    "Summary",
    "collector_for",
    "format_summary",
    "plan_demo",
    "region_for",
    "tariff_for",
]

#: Days after the period end the collections story needs: payment terms (21) + the reminder ladder up to
#: ``disconnect_scheduled`` (14) + the notice period (10) + a few days to reach an allowed weekday.
COLLECTIONS_DAYS = 21 + 14 + 10 + 6


@dataclass(frozen=True, slots=True)
class DemoPlan:
    """The simulated billing month and the part of it the fleet publishes."""

    period: date  # first day of the billed month
    period_end: date  # first day of the next month
    sim_start: datetime  # first interval start the fleet publishes (UTC midnight)
    days: int  # simulated days, ending at the period end

    @property
    def period_text(self) -> str:
        """``YYYY-MM``."""
        return self.period.isoformat()[:7]


def _next_month(d: date) -> date:
    return date(d.year + (d.month == 12), d.month % 12 + 1, 1)


def plan_demo(today: date, days: int) -> DemoPlan:
    """The latest calendar month whose bills can be followed through reminders and a disconnect before ``today``.

    The fleet publishes the last ``days`` days of that month (all of it when ``days`` >= its length), so the month's
    readings are in the past (never refused as future) and the whole collections ladder fits before ``today``.
    """
    if days < 1:
        raise ValueError("days must be at least 1")
    latest_end = today - timedelta(days=COLLECTIONS_DAYS)
    period = date(latest_end.year, latest_end.month, 1)
    while _next_month(period) > latest_end:
        period = date(period.year - (period.month == 1), (period.month - 2) % 12 + 1, 1)
    end = _next_month(period)
    n = min(days, (end - period).days)
    start = datetime(end.year, end.month, end.day, tzinfo=UTC) - timedelta(days=n)
    return DemoPlan(period, end, start, n)


def tariff_for(kind: str, has_pv: bool) -> str:
    """The example tariff a simulated meter is billed on: commercial TOU + demand, residential net metering for PV
    meters, residential TOU with tiers otherwise."""
    if kind == "commercial":
        return "com-tou-demand"
    return "res-nem-tou" if has_pv else "res-tou-tiers"


#: Where the demo's accounts belong for collection work: regions and collectors (staff ids) in turn.
REGIONS = ("north", "central", "south")
COLLECTORS = ("C-101", "C-102", "C-103", "C-104")


def region_for(i: int) -> str:
    """The region of the ``i``-th simulated account."""
    return REGIONS[i % len(REGIONS)]


def collector_for(i: int) -> str:
    """The collector assigned to the ``i``-th simulated account (one collector works two accounts in a row)."""
    return COLLECTORS[(i // 2) % len(COLLECTORS)]


@dataclass(slots=True)
class Summary:
    """Everything the demo prints (and writes to ``summary.json``); a ``None`` figure was not measured."""

    period: str = ""
    simulated_days: int = 0
    meters_by_protocol: dict[str, int] = field(default_factory=dict)
    tariffs: dict[str, int] = field(default_factory=dict)
    broker: str = ""
    readings_published: int = 0
    readings_stored: int = 0
    readings_duplicate: int = 0
    readings_quarantined: int = 0
    messages_quarantined: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    polls_ok: int | None = None
    polls_failed: int | None = None
    polled_readings: int | None = None
    polled_days: int = 0
    poll_faults: dict[str, int] = field(default_factory=dict)
    commissioning: dict[str, str] = field(default_factory=dict)
    meters_billed: int = 0
    bills_issued: int = 0
    bills_total: dict[str, str] = field(default_factory=dict)
    bills_skipped: dict[str, int] = field(default_factory=dict)
    estimated_share: float = 0.0
    deliveries: int = 0
    deliveries_by_kind: dict[str, int] = field(default_factory=dict)
    receiver_received: int = 0
    notices: dict[str, int] = field(default_factory=dict)
    payments: int = 0
    disconnects_allowed: int = 0
    disconnects_blocked: int = 0
    blocked_by_rule: dict[str, int] = field(default_factory=dict)
    account: str = ""
    account_meter: str = ""
    timeline: list[tuple[str, str]] = field(default_factory=list)
    zero_load_intervals: int = 0
    installment_plans: dict[str, int] = field(default_factory=lambda: {"created": 0, "kept": 0, "broken": 0})
    collection_period: str = ""
    collection_by_region: list[dict[str, Any]] = field(default_factory=list)
    collection_by_collector: list[dict[str, Any]] = field(default_factory=list)
    report: str = ""
    greenbutton_files: int = 0
    bill_documents: int = 0
    not_built: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return {name: getattr(self, name) for name in self.__slots__}


def _kv(d: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "none"


def format_summary(s: Summary) -> str:
    """The summary printed at the end of the demo."""
    lines = [
        f"amiflow demo: {s.period} ({s.simulated_days} simulated days), broker {s.broker}",
        f"  meters by protocol: {_kv(s.meters_by_protocol)}",
        f"  tariffs: {_kv(s.tariffs)}",
        f"  readings published {s.readings_published} = stored {s.readings_stored} + duplicates "
        f"{s.readings_duplicate} + quarantined {s.readings_quarantined}"
        + (
            " (holds)"
            if s.readings_published == s.readings_stored + s.readings_duplicate + s.readings_quarantined
            else " (DOES NOT HOLD)"
        ),
        f"  messages quarantined: {s.messages_quarantined}; faults injected: {_kv(s.faults)}",
    ]
    if s.polls_ok is None:
        lines.append("  polls ok/failed: not measured (see 'not built yet' below)")
    else:
        lines.append(
            f"  polls ok {s.polls_ok}, failed {s.polls_failed} over {s.polled_days} days; polled readings stored"
            f" {s.polled_readings};"
            f" commissioning: {_kv(s.commissioning)}"
        )
        lines.append(
            f"  faults injected by the polled simulators: {_kv({k: v for k, v in s.poll_faults.items() if v})}"
        )
    total = ", ".join(f"{v} {k}" for k, v in sorted(s.bills_total.items())) or "0"
    lines += [
        f"  bills issued {s.bills_issued} for {s.meters_billed} meters billed, total {total}; "
        f"estimated share {s.estimated_share:.2%}; skipped: {_kv(s.bills_skipped)}",
        f"  deliveries to billing: {s.deliveries} ({_kv(s.deliveries_by_kind)}); receiver stored {s.receiver_received}",
        f"  notices: {_kv(s.notices)}; payments recorded: {s.payments}",
        f"  disconnect evaluations (daily): allowed {s.disconnects_allowed}, blocked by a protection, calendar,"
        f" weather or rate rule {s.disconnects_blocked} (by rule: {_kv(s.blocked_by_rule)})",
    ]
    if s.account:
        lines.append(f"  account {s.account} (meter {s.account_meter}):")
        lines += [f"    {when}  {what}" for when, what in s.timeline]
        lines.append(f"    zero-load intervals stored while disconnected: {s.zero_load_intervals}")
    plans = s.installment_plans
    lines.append(f"  installment plans: created {plans['created']}, kept {plans['kept']}, broken {plans['broken']}")
    for by, rows in (("region", s.collection_by_region), ("collector", s.collection_by_collector)):
        if rows:
            lines.append(f"  collection by {by} ({s.collection_period}): billed / collected / rate / overdue / DSO")
            lines += [f"    {_collection_line(by, r)}" for r in rows]
    if s.report:
        lines.append(f"  report: {s.report}")
    if s.greenbutton_files:
        lines.append(f"  Green Button (ESPI) usage files: {s.greenbutton_files} in greenbutton/")
    if s.bill_documents:
        lines.append(f"  bill documents: {s.bill_documents} PDFs in bills/ (index.json)")
    lines += [f"  not built yet: {what}" for what in s.not_built]
    lines.append(f"  elapsed: {s.elapsed_s:.1f} s")
    return "\n".join(lines)


def _collection_line(by: str, r: dict[str, Any]) -> str:
    rate = "n/a" if r.get("collection_rate") is None else f"{float(r['collection_rate']):.1%}"
    overdue = sum(float(r[k]) for k in ("arrears_0_30", "arrears_31_60", "arrears_61_90", "arrears_over_90"))
    return (
        f"{r[by]:<12} {r['billed']:>10} {r['currency']} / {r['collected']:>10} / {rate:>6} / {overdue:>9.2f}"
        f" / {r.get('dso_days') or 'n/a'} days; plans {r['plans_active']}/{r['plans_kept']}/{r['plans_broken']},"
        f" reminders {r['reminders_sent']}, disconnects {r['disconnects']}, reconnects {r['reconnects']}"
    )
