"""Installment plans in the database (``amiflow.installment_plans``, migration 0008): create one for an account
(eligibility checked against its arrears on the day, the schedule stored, billing told), read them, and judge a
plan's standing from the payments received since it began (:func:`billing_bridge.plans.schedule.standing`).

Every plan event (created, completed, broken) is stored once in ``amiflow.plan_events`` and sent to billing as a
notice (``installment_plan_created`` / ``_completed`` / ``_broken``) through the outbox in the same transaction, with
a row in ``amiflow.notices`` (debt ``plan:{id}``) like the reminder rungs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import psycopg.errors
from psycopg.types.json import Jsonb

from amiflow.db.outbox import enqueue
from billing_bridge.aging import open_debts
from billing_bridge.arrears import Debt, Payment, load_book, load_facts
from billing_bridge.plans.schedule import Installment, Standing, split_balance, standing
from billing_bridge.plans.terms import PlanRefused, PlanRequest, PlanTerms, check_eligibility
from billing_bridge.policy import RuleSet

__all__ = [
    "Plan",
    "create_plan",
    "get_plan",
    "list_plans",
    "plan_standing",
    "plans_in_good_standing",
    "record_event",
]


@dataclass(frozen=True, slots=True)
class Plan:
    """A stored plan; ``installments`` holds the down payment (number 0) when there is one."""

    id: int
    account: str
    currency: str
    state: str
    overdue_amount: Decimal
    down_payment: Decimal
    installments: tuple[Installment, ...]
    grace_days: int
    current_bills_required: bool
    terms_id: str
    terms_version: str
    debt_refs: tuple[str, ...]
    created_at: datetime
    ended_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        """The plan as the API and ``plans show --json`` give it (money as decimal strings)."""
        return {
            "plan_id": self.id,
            "account": self.account,
            "currency": self.currency,
            "state": self.state,
            "overdue_amount": str(self.overdue_amount),
            "down_payment": str(self.down_payment),
            "installments": [
                {"number": i.number, "due_date": i.due_date.isoformat(), "amount": str(i.amount)}
                for i in self.installments
            ],
            "grace_days": self.grace_days,
            "current_bills_required": self.current_bills_required,
            "terms": {"id": self.terms_id, "version": self.terms_version},
            "debt_refs": list(self.debt_refs),
            "created_at": self.created_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
        }


_COLUMNS = (
    "id, account, currency, state, overdue_amount, down_payment, grace_days, current_bills_required, terms_id,"
    " terms_version, debt_refs, created_at, ended_at"
)


def _plans(conn: psycopg.Connection[Any], where: str, params: tuple[Any, ...]) -> list[Plan]:
    rows = conn.execute(f"SELECT {_COLUMNS} FROM amiflow.installment_plans {where} ORDER BY id", params).fetchall()
    if not rows:
        return []
    items: dict[int, list[Installment]] = {}
    for pid, number, due, amount in conn.execute(
        "SELECT plan_id, number, due_date, amount FROM amiflow.plan_installments WHERE plan_id = ANY(%s)"
        " ORDER BY plan_id, number",
        ([r[0] for r in rows],),
    ):
        items.setdefault(int(pid), []).append(Installment(int(number), due, Decimal(amount)))
    return [
        Plan(int(r[0]), r[1], r[2].strip(), r[3], Decimal(r[4]), Decimal(r[5]), tuple(items.get(int(r[0]), ())),
             int(r[6]), bool(r[7]), r[8], r[9], tuple(r[10]), r[11], r[12])
        for r in rows
    ]  # fmt: skip


def get_plan(conn: psycopg.Connection[Any], plan_id: int) -> Plan | None:
    """One plan by id, or None."""
    found = _plans(conn, "WHERE id = %s", (plan_id,))
    return found[0] if found else None


def list_plans(conn: psycopg.Connection[Any], *, account: str | None = None, state: str | None = None) -> list[Plan]:
    """The plans, oldest first, of one account and/or in one state."""
    return _plans(
        conn,
        "WHERE (%s::text IS NULL OR account = %s) AND (%s::text IS NULL OR state = %s)",
        (account, account, state, state),
    )


def _overdue(conn: psycopg.Connection[Any], rs: RuleSet, account: str, today: date) -> tuple[Decimal, list[str]]:
    """The account's overdue amount on ``today`` (point in time, as the reminders see it) and the debts behind it."""
    book = load_book(conn, today=today, terms_days=rs.payment_terms_days, tz=rs.timezone)
    debts = book.debts.get(account, [])
    opened = open_debts(debts, book.payments.get(account, []))
    overdue = [(d, left) for d, left in opened if left > 0 and d.due_date < today]
    return sum((left for _, left in overdue), Decimal(0)), [d.ref for d, _ in overdue]


def _currency(conn: psycopg.Connection[Any], rs: RuleSet, account: str) -> str:
    row = conn.execute(
        "SELECT coalesce((SELECT currency FROM amiflow.accounts WHERE account = %s),"
        " (SELECT currency FROM amiflow.v_bills WHERE account = %s ORDER BY period_end DESC LIMIT 1))",
        (account, account),
    ).fetchone()
    return str(row[0]).strip() if row and row[0] else rs.currency


def create_plan(
    conn: psycopg.Connection[Any],
    ruleset: RuleSet,
    terms: PlanTerms,
    *,
    account: str,
    installments: int,
    down_payment: Decimal | None = None,
    first_due: date | None = None,
    now: datetime,
) -> Plan:
    """Make a plan of the account's overdue balance on ``now``'s local day; PlanRefused (nothing stored) when the
    terms do not allow it. The down payment defaults to the terms' minimum, the first due date to their default."""
    today = now.astimezone(ZoneInfo(ruleset.timezone)).date()
    facts = load_facts(conn).get(account)
    active = conn.execute(
        "SELECT id FROM amiflow.installment_plans WHERE account = %s AND state = 'active'", (account,)
    ).fetchone()
    broken = conn.execute(
        "SELECT count(*) FROM amiflow.installment_plans WHERE account = %s AND state = 'broken' AND ended_at > %s",
        (account, now - timedelta(days=terms.broken_plans_lookback_days)),
    ).fetchone()
    overdue, refs = _overdue(conn, ruleset, account, today)
    request = PlanRequest(
        account, overdue, installments, down_payment, first_due, today, prepaid=bool(facts and facts.prepaid),
        active_plan=int(active[0]) if active else None, broken_recently=int(broken[0]) if broken else 0,
    )  # fmt: skip
    down, first = check_eligibility(terms, request)
    items = split_balance(
        overdue, down, installments, created_on=today, first_due=first, interval_months=terms.interval_months
    )
    try:
        with conn.transaction():
            row = conn.execute(
                "INSERT INTO amiflow.installment_plans (account, currency, overdue_amount, down_payment, installments,"
                " grace_days, current_bills_required, terms_id, terms_version, debt_refs, created_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (account, _currency(conn, ruleset, account), overdue, down, installments, terms.grace_days,
                 terms.current_bills_required, terms.id, terms.version, refs, now),
            ).fetchone()  # fmt: skip
            assert row is not None
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO amiflow.plan_installments (plan_id, number, due_date, amount) VALUES (%s, %s, %s, %s)",
                    [(row[0], i.number, i.due_date, i.amount) for i in items],
                )
            plan = get_plan(conn, int(row[0]))
            assert plan is not None
            record_event(conn, plan, "created", {"installments": plan.as_json()["installments"]}, now)
    except psycopg.errors.UniqueViolation:
        raise PlanRefused("plan_active", f"account {account} already has a plan running") from None
    return plan


def record_event(conn: psycopg.Connection[Any], plan: Plan, event: str, detail: dict[str, Any], now: datetime) -> bool:
    """Store the plan's ``event`` once and queue its notice to billing; False when it was recorded before."""
    row = conn.execute(
        "INSERT INTO amiflow.plan_events (plan_id, at, event, detail) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (plan_id, event) DO NOTHING RETURNING id",
        (plan.id, now, event, Jsonb(detail)),
    ).fetchone()
    if row is None:
        return False
    kind = f"installment_plan_{event}"
    key = f"notice:{kind}:{plan.account}:plan:{plan.id}"
    payload = {
        "type": kind,
        "account": plan.account,
        "plan_id": plan.id,
        "currency": plan.currency,
        "overdue_amount": str(plan.overdue_amount),
        "down_payment": str(plan.down_payment),
        "terms": {"id": plan.terms_id, "version": plan.terms_version},
        "sent_at": now.isoformat(),
        **detail,
    }
    conn.execute(
        "INSERT INTO amiflow.notices (account, debt_ref, type, sent_at, outbox_key, detail)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (plan.account, f"plan:{plan.id}", kind, now, key, Jsonb(payload)),
    )
    enqueue(conn, kind="notice", idempotency_key=key, payload=payload, account=plan.account)
    return True


def _current_bills(conn: psycopg.Connection[Any], rs: RuleSet, plan: Plan, since: date) -> list[Debt]:
    """The account's bills due on or after ``since`` that the plan does not cover (none for an account billed by
    balance statements: its statements already hold the plan's balance)."""
    stated = conn.execute(
        "SELECT 1 FROM amiflow.accounts WHERE account = %s AND balance IS NOT NULL", (plan.account,)
    ).fetchone()
    if stated or conn.execute("SELECT to_regclass('amiflow.v_bills')").fetchone() in (None, (None,)):
        return []
    rows = conn.execute(
        "SELECT DISTINCT ON (bill_id) bill_id, total, period_end, status FROM amiflow.v_bills"
        " WHERE account = %s AND period_end >= %s ORDER BY bill_id, version DESC",
        (plan.account, since - timedelta(days=rs.payment_terms_days)),
    ).fetchall()
    debts = [
        Debt(plan.account, f"bill:{b}", Decimal(t), pe + timedelta(days=rs.payment_terms_days))
        for b, t, pe, st in rows
        if str(st or "").lower() not in ("void", "cancelled", "superseded") and Decimal(t) > 0
    ]
    return [d for d in debts if d.due_date >= since and d.ref not in plan.debt_refs]


def plan_standing(conn: psycopg.Connection[Any], ruleset: RuleSet, plan: Plan, day: date) -> Standing:
    """The plan's standing on ``day`` (local) from the payments received since it was created."""
    created = plan.created_at.astimezone(ZoneInfo(ruleset.timezone)).date()
    rows = conn.execute(
        "SELECT amount, paid_at FROM amiflow.payments WHERE account = %s AND paid_at >= %s",
        (plan.account, plan.created_at),
    ).fetchall()
    payments = [Payment(plan.account, Decimal(a), at) for a, at in rows]
    return standing(
        plan.installments, _current_bills(conn, ruleset, plan, created), payments, day, grace_days=plan.grace_days,
        current_bills_required=plan.current_bills_required, bill_terms_days=ruleset.payment_terms_days,
        tz=ruleset.timezone,
    )  # fmt: skip


def plans_in_good_standing(conn: psycopg.Connection[Any], ruleset: RuleSet, day: date) -> dict[str, Plan]:
    """Account -> its active plan, for the plans in good standing on ``day`` judged now (not only as last reviewed):
    these accounts get no reminders and no disconnect."""
    if conn.execute("SELECT to_regclass('amiflow.installment_plans')").fetchone() in (None, (None,)):
        return {}
    out = {}
    for plan in list_plans(conn, state="active"):
        if plan_standing(conn, ruleset, plan, day).state == "good_standing":
            out[plan.account] = plan
    return out
