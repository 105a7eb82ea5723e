"""``amiflow plans create|list|show``: installment plans (payment arrangements) from the command line; the work is
:mod:`billing_bridge.plans`. A refused plan is one line naming the reason (exit 1), nothing stored."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from amiflow.db import open_database
from amiflow.errors import ConfigError
from amiflow.settings import Settings
from amiflow_app.command import Command
from billing_bridge.plans import Plan, Standing, create_plan, get_plan, list_plans, load_plan_terms, plan_standing
from billing_bridge.policy import RuleSet, load_ruleset

__all__ = ["PLANS_CREATE", "PLANS_LIST", "PLANS_SHOW"]

_STATES = ("active", "completed", "broken", "cancelled")


def _now(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--now {text!r}: expected ISO 8601 with an offset, e.g. 2026-03-10T15:00:00Z") from None
    if dt.tzinfo is None:
        raise ConfigError(f"--now {text!r}: give an offset or Z")
    return dt


def _money(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{text!r} is not an amount such as 25.00") from None
    if not value.is_finite() or value < 0 or value != value.quantize(Decimal("0.01")):
        raise argparse.ArgumentTypeError(f"{text!r}: give 0 or more, in cents (25.00)")
    return value


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date such as 2026-04-01") from None


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ruleset", help="rule set id (us_tx, eu_de) or TOML file; default AMIFLOW_DISCONNECT_RULESET")
    p.add_argument("--now", help="as of this ISO 8601 time (default: now)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def _create_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--account", required=True, help="the account whose overdue balance the plan splits")
    p.add_argument("--installments", type=int, required=True, help="how many installments (the terms' maximum)")
    p.add_argument("--down-payment", type=_money, help="due today (default: the terms' minimum, e.g. 10%%)")
    p.add_argument("--start", type=_day, help="due date of the first installment (default: the terms' default)")
    p.add_argument("--terms", help="plan terms TOML file (default: the bundled terms of the rule set)")
    _common(p)


def _list_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--account", help="only this account's plans")
    p.add_argument("--state", choices=_STATES, help="only plans in this state")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _show_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("plan", type=int, metavar="PLAN", help="the plan id (see 'amiflow plans list')")
    _common(p)


def _ruleset(settings: Settings, args: argparse.Namespace) -> RuleSet:
    return load_ruleset(args.ruleset or settings.disconnect_ruleset)


def _print_plan(plan: Plan, s: Standing | None) -> None:
    print(
        f"plan {plan.id} of account {plan.account}: {plan.state}; {plan.overdue_amount} {plan.currency} overdue at"
        f" {plan.created_at:%Y-%m-%d}, terms {plan.terms_id} {plan.terms_version}, grace {plan.grace_days} days"
    )
    paid = {i.ref: i for i in s.items} if s else {}
    for item in plan.installments:
        what = "down payment" if item.number == 0 else f"installment {item.number}"
        st = paid.get(str(item.number))
        extra = f"  paid {st.paid:>10}  {st.state}" if st else ""
        print(f"  {item.due_date}  {item.amount:>10}  {what:<16}{extra}")
    if s is not None:
        for bill in s.current:
            print(f"  {bill.due_date}  {bill.amount:>10}  {bill.ref:<16}  paid {bill.paid:>10}  {bill.state} (current)")
        print(f"  standing on {s.day}: {s.state}; paid to the plan {s.paid_to_plan}, remaining {s.remaining}")


def _create(args: argparse.Namespace, settings: Settings) -> int:
    rs = _ruleset(settings, args)
    terms = load_plan_terms(args.terms or rs.id)
    with open_database(settings) as db, db.connect() as conn:
        plan = create_plan(conn, rs, terms, account=args.account, installments=args.installments,
                           down_payment=args.down_payment, first_due=args.start, now=_now(args.now))  # fmt: skip
    if args.json:
        print(json.dumps(plan.as_json(), indent=2))
    else:
        _print_plan(plan, None)
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    with open_database(settings) as db, db.connect() as conn:
        plans = list_plans(conn, account=args.account, state=args.state)
    if args.json:
        print(json.dumps([p.as_json() for p in plans], indent=2))
        return 0
    if not plans:
        print("no installment plans")
        return 0
    print(f"{'PLAN':>6}  {'ACCOUNT':<16} {'STATE':<10} {'CREATED':<10} {'OVERDUE':>10} {'CUR':<3} {'ITEMS':>5}  ENDED")
    for p in plans:
        ended = f"{p.ended_at:%Y-%m-%d}" if p.ended_at else "-"
        print(f"{p.id:>6}  {p.account:<16} {p.state:<10} {p.created_at:%Y-%m-%d} {p.overdue_amount:>10} {p.currency:<3}"
              f" {len(p.installments):>5}  {ended}")  # fmt: skip
    return 0


def _show(args: argparse.Namespace, settings: Settings) -> int:
    rs = _ruleset(settings, args)
    today = _now(args.now).astimezone(ZoneInfo(rs.timezone)).date()
    with open_database(settings) as db, db.connect() as conn:
        plan = get_plan(conn, args.plan)
        if plan is None:
            raise ConfigError(f"plan {args.plan}: no such plan (see 'amiflow plans list')")
        s = plan_standing(conn, rs, plan, today)
    if args.json:
        print(json.dumps(plan.as_json() | {"standing": s.as_json()}, indent=2))
    else:
        _print_plan(plan, s)
    return 0


PLANS_CREATE = Command(
    help="split an account's overdue balance into a down payment and dated installments (eligibility per the terms)",
    add_arguments=_create_args,
    run=_create,
)
PLANS_LIST = Command(help="list installment plans", add_arguments=_list_args, run=_list)
PLANS_SHOW = Command(
    help="show one plan: its installments, what each has been paid and its standing",
    add_arguments=_show_args,
    run=_show,
)
