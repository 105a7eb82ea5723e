"""Bill documents from the store: the issued bills of a month and everything their documents show.

For each bill (the latest issued version of every bill whose period starts in the month): the customer's contact
(``amiflow.account_contacts``), the meter's intervals as billed (VEE overlaid) split by day and TOU period, the
register reads, the account statement and the installment plan (when the plans table exists), and the payment
reference (:mod:`billing_bridge.customer.payment_reference`).

The account statement, for the bill's period [start, end) as UTC instants:

- an account the billing system has stated a balance for (``amiflow.balances``) before the period's end: the newest
  such statement is the previous balance, and the payments after its ``as_of`` up to the period's end are deducted;
- any other account: the previous balance is its earlier bills (the latest issued version of each bill of an earlier
  period) less the payments before the period's start; the payments inside the period are deducted.

Amount due = previous balance - payments + this bill; due ``payment_terms_days`` after the period's last day (the
rule the arrears engine applies). Nothing after the period's end counts, so a document rendered again later is the
same document.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from amiflow.db.accounts import AccountContact, list_contacts
from billing_bridge.customer.documents_model import (
    BillDocument,
    Customer,
    DailyUsage,
    DocLine,
    PaymentLine,
    PlanStatus,
    RegisterRead,
    Statement,
    money,
)
from billing_bridge.customer.documents_usage import daily_tou, read_registers
from billing_bridge.customer.payment_reference import bill_reference
from billing_bridge.customer.usage import MeterInfo, UsageNotFound, account_known, load_channels
from rating.compile import CompiledTariff, compile_tariff
from rating.tariff import USAGE_UNITS, TariffSpec

__all__ = ["DocumentOptions", "StoredBill", "build_document", "document_from_bill", "gather_documents", "issued_bills"]


def _kwh_per(unit: str) -> Decimal:
    """kWh per unit of a tariff's usage (rating.tariff.USAGE_UNITS; a volume such as m3 of water is no energy: 0)."""
    base, per_unit = USAGE_UNITS.get(unit, ("", Decimal(0)))
    return per_unit / 1000 if base == "Wh" else Decimal(0)


@dataclass(frozen=True, slots=True)
class DocumentOptions:
    """How documents are built: the payment terms, and the disconnect rule set that judges installment plans
    (``billing_bridge.policy.RuleSet``; None leaves plan standing out)."""

    terms_days: int = 21
    ruleset: Any = None


@dataclass(frozen=True, slots=True)
class StoredBill:
    """An issued bill version with the registry facts of its meter."""

    body: dict[str, Any]
    created_at: datetime
    timezone: str
    tariff_name: str | None
    tariff_body: dict[str, Any] | None


def _next_month(d: date) -> date:
    return date(d.year + (d.month == 12), d.month % 12 + 1, 1)


def issued_bills(conn: psycopg.Connection[Any], period: date, account: str | None = None) -> list[StoredBill]:
    """The latest issued version of every bill whose period starts in the month of ``period``, by bill id.

    UsageNotFound (a one-line ConfigError) for an unknown account and for a month without bills.
    """
    if account is not None and not account_known(conn, account):
        raise UsageNotFound(f"unknown account {account!r}")
    rows = conn.execute(
        "SELECT b.body, b.created_at, coalesce(m.timezone, 'UTC'), t.name, t.body FROM amiflow.bills b"
        " LEFT JOIN amiflow.meters m ON m.name = b.meter"
        " LEFT JOIN amiflow.tariffs t ON t.id = b.tariff_id AND t.version = b.tariff_version"
        " WHERE b.status = 'issued' AND b.period_start >= %s AND b.period_start < %s"
        " AND (%s::text IS NULL OR b.account = %s) ORDER BY b.bill_id",
        (period, _next_month(period), account, account),
    ).fetchall()
    if not rows:
        month = period.strftime("%Y-%m")
        whose = f" for account {account!r}" if account is not None else ""
        raise UsageNotFound(f"no bills{whose} in {month} (bills come from 'amiflow bill run --period {month}')")
    return [StoredBill(*r) for r in rows]


@lru_cache(maxsize=64)
def _compiled(body_json: str) -> CompiledTariff:
    return compile_tariff(TariffSpec.model_validate_json(body_json))


def gather_documents(
    conn: psycopg.Connection[Any], period: date, *, account: str | None = None, options: DocumentOptions | None = None
) -> list[BillDocument]:
    """The documents of the month's bills (of ``account`` when given); errors as :func:`issued_bills`."""
    opts = options or DocumentOptions()
    bills = issued_bills(conn, period, account)
    accounts = sorted({b.body["account"] for b in bills if b.body.get("account")})
    contacts = {c.account: c for c in list_contacts(conn, accounts)}
    return [build_document(conn, b, contacts.get(b.body.get("account") or ""), opts) for b in bills]


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def build_document(
    conn: psycopg.Connection[Any], bill: StoredBill, contact: AccountContact | None, opts: DocumentOptions
) -> BillDocument:
    """One bill's document from the store."""
    body = bill.body
    start, last = date.fromisoformat(body["period"]["start"]), date.fromisoformat(body["period"]["end"])
    start_utc, end_utc = _utc(body["period"]["start_utc"]), _utc(body["period"]["end_utc"])
    meter, acct = body["meters"][0], body.get("account")
    total = money(body["total"], body["currency"])
    issued_on = bill.created_at.astimezone(ZoneInfo(bill.timezone)).date()
    return document_from_bill(
        body, issued_at=bill.created_at, timezone=bill.timezone, tariff_name=bill.tariff_name,
        tax_codes=frozenset(t["code"] for t in (bill.tariff_body or {}).get("taxes", ())),
        customer=_customer(acct, contact), usage=_daily_usage(conn, bill, meter, acct, start, last + timedelta(days=1)),
        registers=read_registers(conn, meter, start_utc, end_utc),
        statement=_statement(conn, body, start_utc, end_utc, total, last + timedelta(days=opts.terms_days)),
        plan=_plan(conn, acct, bill.created_at, issued_on, opts),
    )  # fmt: skip


def document_from_bill(
    body: dict[str, Any],
    *,
    issued_at: datetime,
    timezone: str,
    customer: Customer,
    statement: Statement,
    usage: DailyUsage | None = None,
    registers: tuple[RegisterRead, ...] = (),
    tariff_name: str | None = None,
    tax_codes: frozenset[str] = frozenset(),
    plan: PlanStatus | None = None,
) -> BillDocument:
    """The document of a bill JSON (CONTRACT.md) and the facts read around it (pure). Without ``tax_codes`` (the
    tariff's taxes), lines whose unit is the currency (a tax base) are the taxes."""
    currency = body["currency"]
    start, last = date.fromisoformat(body["period"]["start"]), date.fromisoformat(body["period"]["end"])
    lines = tuple(
        DocLine(
            x["code"], x["description"], None if x["quantity"] is None else Decimal(x["quantity"]), x["unit"],
            None if x["rate"] is None else Decimal(x["rate"]), money(x["amount"], currency),
            x["code"] in tax_codes or (not tax_codes and x["unit"] == currency),
        )
        for x in body["lines"]
    )  # fmt: skip
    det = body.get("determinants", {})
    unit = body["tariff"].get("unit", "kWh")  # a heat (MWh) or water (m3) tariff: the determinants are in it
    used = Decimal(str(det.get("import_kwh", "0")))
    kwh = used * _kwh_per(unit)
    notes = () if usage is not None else ("No interval readings are stored for this period's days.",)
    return BillDocument(
        bill_id=body["bill_id"], version=int(body["version"]), customer=customer, meter=body["meters"][0],
        timezone=timezone, currency=currency, issued_on=issued_at.astimezone(ZoneInfo(timezone)).date(),
        period_start=start, period_end=last, tariff=body["tariff"]["id"],
        tariff_version=int(body["tariff"]["version"]), tariff_name=tariff_name or body["tariff"]["id"],
        lines=lines, total=money(body["total"], currency), estimated_share=float(body.get("estimated_share") or 0.0),
        kwh_import=kwh, kwh_export=Decimal(str(det.get("export_kwh", "0"))),
        kwh_by_period=tuple((k, Decimal(str(v))) for k, v in (det.get("import_kwh_by_period") or {}).items()),
        registers=registers, usage=usage, statement=statement,
        payment_reference=bill_reference(body["bill_id"], body.get("account"), start), plan=plan,
        issued_at=issued_at.astimezone(UTC), notes=notes, usage_unit=unit,
        usage_quantity=None if unit == "kWh" else used,
    )  # fmt: skip


def _customer(account: str | None, contact: AccountContact | None) -> Customer:
    if contact is None:
        return Customer(account)
    return Customer(account, contact.name, contact.address, contact.email)


def _daily_usage(
    conn: psycopg.Connection[Any], bill: StoredBill, meter: str, account: str | None, start: date, end: date
) -> DailyUsage | None:
    if bill.tariff_body is None:
        return None
    tariff = _compiled(json.dumps(bill.tariff_body, sort_keys=True))
    info = MeterInfo(meter, account, bill.timezone, bill.body["tariff"]["id"])
    usage = load_channels(conn, info, start, end)
    imp, exp = usage.channel("import"), usage.channel("export")
    if imp is None:
        return None
    return daily_tou(
        tariff, bill.timezone, start, end, imp.ts, imp.wh, imp.interval_s, quality=imp.quality,
        export_ts=None if exp is None else exp.ts, export_wh=None if exp is None else exp.wh,
    )  # fmt: skip


def _statement(
    conn: psycopg.Connection[Any],
    body: dict[str, Any],
    start_utc: datetime,
    end_utc: datetime,
    total: Decimal,
    due: date,
) -> Statement:
    account, currency = body.get("account"), body["currency"]
    if account is None:
        return Statement(money(0, currency), (), total, due)
    stated = conn.execute(
        "SELECT balance, as_of FROM amiflow.balances WHERE account = %s AND as_of < %s ORDER BY as_of DESC LIMIT 1",
        (account, end_utc),
    ).fetchone()
    if stated is not None:
        previous, since, basis, as_of = Decimal(stated[0]), stated[1], "statement", stated[1].date()
    else:
        row = conn.execute(
            "SELECT coalesce(sum(total), 0) FROM amiflow.bills WHERE account = %s AND status = 'issued'"
            " AND period_start < %s",
            (account, body["period"]["start"]),
        ).fetchone()
        paid = conn.execute(
            "SELECT coalesce(sum(amount), 0) FROM amiflow.payments WHERE account = %s AND paid_at < %s",
            (account, start_utc),
        ).fetchone()
        previous = Decimal(row[0] if row else 0) - Decimal(paid[0] if paid else 0)
        since, basis, as_of = start_utc - timedelta(microseconds=1), "bills", None
    pays = conn.execute(
        "SELECT paid_at, amount FROM amiflow.payments WHERE account = %s AND paid_at > %s AND paid_at < %s"
        " ORDER BY paid_at, payment_id",
        (account, since, end_utc),
    ).fetchall()
    payments = tuple(PaymentLine(at.astimezone(UTC).date(), money(a, currency)) for at, a in pays)
    return Statement(money(previous, currency), payments, total, due, basis, as_of)


def _plan(
    conn: psycopg.Connection[Any], account: str | None, issued_at: datetime, issued_on: date, opts: DocumentOptions
) -> PlanStatus | None:
    """The account's latest installment plan created before the bill was issued (the table may not exist)."""
    if account is None:
        return None
    row = conn.execute("SELECT to_regclass('amiflow.installment_plans') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return None
    from billing_bridge.plans import list_plans, plan_standing

    plans = [p for p in list_plans(conn, account=account) if p.created_at <= issued_at]
    if not plans:
        return None
    plan = plans[-1]
    items = [i for i in plan.installments if i.number >= 1]
    if opts.ruleset is None:
        first = items[0] if items else None
        return PlanStatus(
            plan.id, plan.state, None, len(items), 0, first.number if first else None,
            first.due_date if first else None, first.amount if first else None, sum((i.amount for i in items),
                                                                                      Decimal(0)),
        )  # fmt: skip
    st = plan_standing(conn, opts.ruleset, plan, issued_on)
    statuses = [s for s in st.items if s.ref != "0"]
    unpaid = [s for s in st.items if s.state != "paid"]
    nxt = unpaid[0] if unpaid else None
    return PlanStatus(
        plan.id, plan.state, st.state, len(statuses), sum(1 for s in statuses if s.state == "paid"),
        int(nxt.ref) if nxt else None, nxt.due_date if nxt else None, nxt.remaining if nxt else None,
        sum((s.remaining for s in st.items), Decimal(0)),
    )  # fmt: skip
