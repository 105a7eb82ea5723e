"""``amiflow arrears report``, ``amiflow disconnect plan`` and ``amiflow disconnect run``.

``plan``: charge prepaid accounts, send the due reminder rungs, evaluate every overdue account against the policy
and record each decision; prints the decisions. ``run``: the same, then issue the allowed disconnects, schedule
reconnects for accounts that paid, and send every pending command to its meter (reading the relay back).
Without ``--forecast-min/--forecast-max`` the weather is unknown, which blocks disconnects under rule sets that
require a forecast (both bundled ones do).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from amiflow.errors import ConfigError
from amiflow.settings import Settings
from amiflow_app.command import Command

__all__ = ["ARREARS_REPORT", "DISCONNECT_PLAN", "DISCONNECT_RUN"]

log = logging.getLogger(__name__)


def _when(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--now {text!r}: expected ISO 8601 with an offset, e.g. 2026-03-10T15:00:00Z") from None
    if dt.tzinfo is None:
        raise ConfigError(f"--now {text!r}: give an offset or Z")
    return dt


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ruleset", help="rule set id (us_tx, eu_de) or TOML file; default AMIFLOW_DISCONNECT_RULESET")
    p.add_argument("--now", help="decide as of this ISO 8601 time (default: now)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _plan_args(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--forecast-min", type=float, help="forecast minimum temperature (C) for the next 24 h")
    p.add_argument("--forecast-max", type=float, help="forecast maximum temperature (C) for the next 24 h")


def _report_args(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--top", type=int, default=20, help="how many accounts (default 20)")


def _forecast(args: argparse.Namespace) -> tuple[float, float] | None:
    lo, hi = args.forecast_min, args.forecast_max
    if (lo is None) != (hi is None):
        raise ConfigError("give both --forecast-min and --forecast-max, or neither (weather unknown)")
    return None if lo is None or hi is None else (lo, hi)


def _open(settings: Settings, args: argparse.Namespace) -> tuple[Any, Any]:
    from amiflow.db import open_database
    from billing_bridge.policy import load_ruleset

    ruleset = load_ruleset(args.ruleset or settings.disconnect_ruleset)
    return open_database(settings), ruleset


def _run_report(args: argparse.Namespace, settings: Settings) -> int:
    from billing_bridge.reminders import score_accounts

    db, rs = _open(settings, args)
    now = _when(args.now)
    with db, db.connect() as conn:
        arrears, scores = score_accounts(conn, rs, now.astimezone(ZoneInfo(rs.timezone)).date())
    top = sorted(scores.values(), key=lambda s: (-s.score, s.account))[: args.top]
    rows: list[dict[str, Any]] = []
    for s in top:
        a = arrears.get(s.account)
        rows.append(
            {
                "account": s.account,
                "score": s.score,
                "overdue": str(a.overdue_amount) if a else "0",
                "features": {k: getattr(s.features, k) for k in s.contributions},
                "contributions": dict(s.contributions),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    print(f"{'account':<16} {'score':>6} {'overdue':>10} {'dpd':>4} {'ratio':>6} {'late':>4} {'part':>4} {'cons':>6}")
    for r in rows:
        f = r["features"]
        ratio = "-" if f["overdue_ratio"] is None else f"{f['overdue_ratio']:.2f}"
        cons = "-" if f["consumption_change"] is None else f"{f['consumption_change']:+.0%}"
        print(
            f"{r['account']:<16} {r['score']:>6.1f} {r['overdue']:>10} {f['days_past_due']:>4} {ratio:>6}"
            f" {f['late_payments_12m']:>4} {f['partial_payments_12m']:>4} {cons:>6}"
        )
    return 0


def _plan(args: argparse.Namespace, settings: Settings, *, issue: bool) -> int:
    from billing_bridge.commands import exclusive, plan_disconnects, schedule_reconnects
    from billing_bridge.prepaid import update_prepaid
    from billing_bridge.reminders import send_reminders

    db, rs = _open(settings, args)
    now = _when(args.now)
    forecast = _forecast(args)
    with db, db.connect() as conn, exclusive(conn):
        charged = update_prepaid(conn, rs, now=now)
        sent = send_reminders(conn, rs, now=now)
        items = plan_disconnects(conn, rs, now=now, forecast_c=forecast, issue=issue)
        reconnects, outcomes = [], []
        if issue:
            reconnects = schedule_reconnects(conn, rs, now=now, within_s=settings.reconnect_within_s)
            outcomes = asyncio.run(_dispatch(conn, settings))
    summary = {
        "ruleset": {"id": rs.id, "version": rs.version},
        "now": now.isoformat(),
        "prepaid_updated": len(charged),
        "notices": [{"account": n.account, "type": n.type, "debt": n.debt_ref} for n in sent],
        "decisions": [
            {
                "id": i.decision_id,
                "account": i.account,
                "meter": i.meter,
                "allowed": i.decision.allowed,
                "rules": list(i.decision.deciding_rules) if not i.decision.allowed else [],
                "command": str(i.command_id) if i.command_id else None,
            }
            for i in items
        ],
        "reconnects_scheduled": len(reconnects),
        "commands": [
            {"id": str(o.id), "meter": o.meter, "action": o.action, "state": o.state, "relay": o.relay}
            | {"error": o.error}
            for o in outcomes
        ],
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_plan(summary)
    return 0


def _print_plan(s: dict[str, Any]) -> None:
    print(f"rule set {s['ruleset']['id']} {s['ruleset']['version']} at {s['now']}")
    print(f"notices queued: {len(s['notices'])}")
    for n in s["notices"]:
        print(f"  {n['account']:<16} {n['type']}")
    print(f"decisions: {len(s['decisions'])} ({sum(d['allowed'] for d in s['decisions'])} allowed)")
    for d in s["decisions"]:
        verdict = "ALLOWED" if d["allowed"] else "blocked: " + ", ".join(d["rules"])
        print(f"  #{d['id']:<6} {d['account']:<16} {d['meter']:<16} {verdict}")
    for c in s["commands"]:
        print(f"  command {c['action']} {c['meter']}: {c['state']} (relay {c['relay']}) {c['error'] or ''}")


async def _dispatch(conn: Any, settings: Settings) -> list[Any]:
    from billing_bridge.commands import DlmsRelayDriver, ModbusRelayDriver, MqttRelayDriver, RelayDriver, run_commands

    password = settings.dlms_password.get_secret_value().encode() if settings.dlms_password else None
    drivers: dict[str, RelayDriver] = {"dlms": DlmsRelayDriver(password=password), "modbus": ModbusRelayDriver()}
    async with AsyncExitStack() as stack:
        if settings.mqtt_url:
            mqtt = MqttRelayDriver(settings.mqtt_url, prefix=settings.mqtt_topic_prefix)
            drivers["mqtt"] = await stack.enter_async_context(mqtt)
        return await run_commands(
            conn, drivers, attempts=settings.command_attempts, retry_delay_s=settings.command_retry_s
        )


ARREARS_REPORT = Command(
    help="the accounts most at risk of arrears, with their feature values",
    add_arguments=_report_args,
    run=_run_report,
)
DISCONNECT_PLAN = Command(
    help="send due reminders, evaluate arrears against the policy and record the decisions",
    add_arguments=_plan_args,
    run=lambda args, settings: _plan(args, settings, issue=False),
)
DISCONNECT_RUN = Command(
    help="plan, then issue allowed disconnects and due reconnects to the meters and confirm the relay state",
    add_arguments=_plan_args,
    run=lambda args, settings: _plan(args, settings, issue=True),
)
