"""The collections part of ``amiflow demo``: the other accounts pay, one account goes through the reminder ladder,
is disconnected on the first day the policy allows (its simulated meter's relay opens and its load drops to zero),
pays, and is reconnected; a protected account stays connected however long it owes; two accounts get installment
plans, one kept and one broken (:mod:`amiflow_app.demo.installments`)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from amiflow.errors import AmiflowError
from amiflow_app.demo.installments import PlanStory
from amiflow_app.demo.plan import DemoPlan, Summary
from amiflow_app.demo.steps import FleetRun, day_at, days_between, scalar, utc, wait_settled
from billing_bridge.policy import NOT_YET_RULES

__all__ = ["run_collections"]

MILD_FORECAST_C = (4.0, 15.0)
RULESET = "us_tx"


def _owed(conn: psycopg.Connection[Any], account: str) -> Decimal:
    total = scalar(conn, "SELECT sum(total) FROM amiflow.v_bills WHERE account = %s AND status = 'issued'", (account,))
    return Decimal(total or 0).quantize(Decimal("0.01"))


def _pay(conn: psycopg.Connection[Any], account: str, amount: Decimal, at: datetime, ref: str) -> None:
    from billing_bridge.payments import PaymentIn, record_payment

    payment = PaymentIn(payment_id=f"PAY-{ref}-{account}", account=account, amount=str(amount), currency="USD",
                        paid_at=at)  # fmt: skip
    record_payment(conn, payment, "api")


def _pay_others(conn: psycopg.Connection[Any], plan: DemoPlan, keep: set[str]) -> int:
    """Every billed account but ``keep`` pays its bill ten days after the period."""
    rows = conn.execute(
        "SELECT account, sum(total) FROM amiflow.v_bills WHERE status = 'issued' AND account IS NOT NULL"
        " AND period_start = %s GROUP BY account ORDER BY account",
        (plan.period,),
    ).fetchall()
    paid_at = day_at(plan.period_end, 12) + timedelta(days=10)
    n = 0
    for account, total in rows:
        if account not in keep and Decimal(total) > 0:
            _pay(conn, account, Decimal(total).quantize(Decimal("0.01")), paid_at, plan.period_text)
            n += 1
    return n


def _billed(conn: psycopg.Connection[Any], meter: str) -> bool:
    return bool(scalar(conn, "SELECT count(*) FROM amiflow.v_bills WHERE meter = %s AND status = 'issued'", (meter,)))


def _zero_intervals(conn: psycopg.Connection[Any], meter: str, since: datetime) -> list[datetime]:
    rows = conn.execute(
        "SELECT ts FROM amiflow.v_readings WHERE meter = %s AND obis = '1-0:1.29.0' AND ts > %s AND value = 0"
        " ORDER BY ts",
        (meter, since),
    ).fetchall()
    return [r[0] for r in rows]


def _wait(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AmiflowError(f"demo: timed out waiting for {what}")
        time.sleep(0.1)


def _find_disconnect_day(
    conn: psycopg.Connection[Any], plan: DemoPlan, today: date, target: str, summary: Summary, story: PlanStory
) -> datetime | None:
    """Run the daily collections job (the plans' story, reminders, then the disconnect evaluation) day by day after
    the period until the target account's disconnect is allowed and issued; returns that day's evaluation time."""
    from billing_bridge import plan_disconnects
    from billing_bridge.policy import load_ruleset
    from billing_bridge.reminders import send_reminders

    rules = load_ruleset(RULESET)
    for day in days_between(plan.period_end, today - timedelta(days=1)):
        story.on_day(conn, day, rules)
        for notice in send_reminders(conn, rules, now=day_at(day, 15)):
            if notice.account == target:
                summary.timeline.append((utc(day_at(day, 15)), f"notice {notice.type}"))
        now = day_at(day, 16)
        issued = None
        for item in plan_disconnects(conn, rules, now=now, forecast_c=MILD_FORECAST_C, issue=True):
            d = item.decision
            if d.allowed:
                summary.disconnects_allowed += 1
            elif hard := [r for r in d.blocking if r not in NOT_YET_RULES]:  # protection/calendar/weather/rate
                summary.disconnects_blocked += 1
                for rule in hard:
                    summary.blocked_by_rule[rule] = summary.blocked_by_rule.get(rule, 0) + 1
                if item.account == target and set(d.blocking) <= set(hard):
                    summary.timeline.append((utc(now), f"disconnect blocked: {', '.join(d.blocking)}"))
            if item.account == target and item.command_id is not None:
                issued = now
                summary.timeline.append((utc(now), f"disconnect allowed ({RULESET}); command {item.command_id}"))
        if issued is not None:
            return issued
    return None


async def _relay(mqtt_url: str, prefix: str, conn: psycopg.Connection[Any]) -> list[Any]:
    from billing_bridge import MqttRelayDriver, run_commands

    async with MqttRelayDriver(mqtt_url, prefix=prefix, timeout_s=5) as driver:
        return await run_commands(conn, {"mqtt": driver}, retry_delay_s=0.2)


def run_collections(
    url: str,
    mqtt_url: str,
    fleet_config: Any,
    worker: Any,
    plan: DemoPlan,
    today: date,
    summary: Summary,
    register: Callable[[FleetRun], None],
) -> Any:
    """The collections story; returns the FleetStats of the target meter's run (None when it could not run)."""
    from billing_bridge import schedule_reconnects

    target_meter = fleet_config.meter_name(0)
    target, protected = "ACC-000001", "ACC-000002"
    with psycopg.connect(url, autocommit=True) as conn:
        _assign_the_rest(conn)
        if not _billed(conn, target_meter):
            summary.not_built.append(f"collections: {target_meter} got no bill, so its account owes nothing")
            return None
        summary.account, summary.account_meter = target, target_meter
        conn.execute(
            "INSERT INTO amiflow.account_policy (account, protected) VALUES (%s, ARRAY['life_support'])"
            " ON CONFLICT (account) DO UPDATE SET protected = excluded.protected",
            (protected,),
        )
        story = PlanStory(plan, summary, _pay, _ruleset().payment_terms_days)
        summary.payments += _pay_others(conn, plan, {target, protected} | story.accounts)
        summary.timeline.append(
            (utc(day_at(plan.period_end, 0)), f"bill for {plan.period_text}: {_owed(conn, target)} USD")
        )
        now = _find_disconnect_day(conn, plan, today, target, summary, story)
        story.count(conn)
        if now is None:
            summary.not_built.append("collections: no day before today allowed the disconnect")
            return None
        # The account's meter keeps publishing from the evaluation on, 3600x faster than real time, one interval
        # per message, so the relay's effect is visible interval by interval.
        cfg = dataclasses.replace(
            fleet_config, meters=1, start=now, days=0.25, per_message=1, speed=3600.0, faults="", armed_share=0.0,
            outages_per_day=0.0, client_id=f"{fleet_config.client_id}-acct", linger_s=2.0,
        )  # fmt: skip
        run = FleetRun(cfg, mqtt_url)
        register(run)
        run.start()
        if not run.fleet.ready.wait(15):
            raise AmiflowError("demo: the account's simulated meter did not connect")
        (off,) = asyncio.run(_relay(mqtt_url, cfg.prefix, conn))
        summary.timeline.append((utc(now), f"disconnect {off.state}, relay read back: {off.relay}"))
        if off.state != "confirmed":
            raise AmiflowError(f"demo: the disconnect of {target_meter} was not confirmed ({off.error})")
        _wait(lambda: len(_zero_intervals(conn, target_meter, now)) >= 4, 30, "zero-load intervals")
        last = scalar(
            conn, "SELECT max(ts) FROM amiflow.v_readings WHERE meter = %s AND obis = '1-0:1.29.0'", (target_meter,)
        )
        paid_at = last + timedelta(minutes=1)
        owed = _owed(conn, target)
        _pay(conn, target, owed, paid_at, plan.period_text)
        summary.payments += 1
        summary.timeline.append((utc(paid_at), f"payment {owed} USD received"))
        schedule_reconnects(conn, _ruleset(), now=paid_at, within_s=3600)
        (on,) = asyncio.run(_relay(mqtt_url, cfg.prefix, conn))
        summary.timeline.append((utc(paid_at), f"reconnect {on.state}, relay read back: {on.relay}"))
        stats = run.join(60)
        wait_settled(worker, worker.metrics.messages_received, 30)
        zeros = _zero_intervals(conn, target_meter, now)
        summary.zero_load_intervals = len(zeros)
        if zeros:
            summary.timeline.append((utc(zeros[0]), f"first zero-load interval (end) of {len(zeros)}"))
            resumed = scalar(
                conn,
                "SELECT min(ts) FROM amiflow.v_readings WHERE meter = %s AND obis = '1-0:1.29.0' AND ts > %s"
                " AND value > 0",
                (target_meter, zeros[-1]),
            )
            summary.timeline.append((utc(zeros[-1]), "last zero-load interval"))
            if resumed is not None:
                summary.timeline.append((utc(resumed), "load back after the reconnect"))
    summary.timeline.sort(key=lambda item: item[0])  # stable: same-minute steps keep their order
    return stats


def _assign_the_rest(conn: psycopg.Connection[Any]) -> None:
    """A region and a collector for the accounts registered after the MQTT fleet (the polled meters'), in turn."""
    from amiflow.db.registry import AccountAssignment, assign_account
    from amiflow_app.demo.plan import collector_for, region_for

    done = int(scalar(conn, "SELECT count(*) FROM amiflow.accounts WHERE region IS NOT NULL"))
    rest = conn.execute(
        "SELECT DISTINCT m.account FROM amiflow.meters m LEFT JOIN amiflow.accounts a ON a.account = m.account"
        " WHERE m.account IS NOT NULL AND a.region IS NULL ORDER BY 1"
    ).fetchall()
    for i, (account,) in enumerate(rest, start=done):
        assign_account(conn, AccountAssignment(account, region_for(i), collector_for(i)))


def write_collection(conn: psycopg.Connection[Any], plan: DemoPlan, out: Path, summary: Summary) -> None:
    """The collection KPIs by region and by collector of the month the bills were issued in (the month after the
    billed one), into the summary and as HTML reports (a plot per KPI over 12 months) with CSV in ``out``."""
    from amiflow_app.report.collection import gather_collection, write_collection_report

    summary.collection_period = plan.period_end.isoformat()[:7]
    for by in ("region", "collector"):
        report = gather_collection(conn, _ruleset(), plan.period_end, by)
        write_collection_report(report, out)
        setattr(summary, f"collection_by_{by}", report.as_json())


def _ruleset() -> Any:
    from billing_bridge.policy import load_ruleset

    return load_ruleset(RULESET)
