"""The words and numbers of a bill document, shared by the PDF and the HTML renderer so both say the same.

Money is printed exactly as stored (Decimal, thousands separated, the currency's minor unit); kWh with three
decimals; dates as ``1 Nov 2026``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from billing_bridge.customer.documents_model import BillDocument, DocLine, money
from billing_bridge.customer.payment_reference import format_reference

__all__ = [
    "PALETTE",
    "Row",
    "charge_rows",
    "day_text",
    "estimated_text",
    "kwh_text",
    "used_line",
    "money_text",
    "payment_lines",
    "plan_lines",
    "register_rows",
    "statement_rows",
    "summary_lines",
    "title",
]

#: colours of the TOU periods in the usage chart, by period index (distinct in grey scale too)
PALETTE = ((31, 78, 121), (230, 159, 0), (86, 180, 233), (0, 158, 115), (204, 121, 167), (120, 120, 120))


@dataclass(frozen=True, slots=True)
class Row:
    """One row of a table: cells in column order; ``strong`` for totals."""

    cells: tuple[str, ...]
    strong: bool = False


def money_text(amount: Decimal, currency: str) -> str:
    """``1,234.50 USD``."""
    return f"{money(amount, currency):,} {currency}"


def used_line(doc: BillDocument) -> tuple[str, str]:
    """("Energy used", "123.456 kWh[, fed in ...]"), or a heat or water tariff's own unit ("Water used", "m3")."""
    if doc.usage_unit == "kWh":
        fed = f", fed in {kwh_text(doc.kwh_export)}" if doc.kwh_export else ""
        return "Energy used", kwh_text(doc.kwh_import) + fed
    quantity, unit = doc.used
    return ("Water used" if unit == "m3" else "Energy used"), f"{quantity:,.3f} {unit}"


def kwh_text(kwh: Decimal | None) -> str:
    return "-" if kwh is None else f"{kwh:,.3f} kWh"


def day_text(d: date) -> str:
    return f"{d.day} {d:%b %Y}"


def _at_text(at: datetime | None, tz: str) -> str:
    return "-" if at is None else at.astimezone(ZoneInfo(tz)).strftime("%d %b %Y %H:%M")


def title(doc: BillDocument) -> str:
    return f"Electricity bill {day_text(doc.period_start)} - {day_text(doc.period_end)}"


def summary_lines(doc: BillDocument) -> list[tuple[str, str]]:
    """(label, value) facts at the top of the bill."""
    return [
        ("Account", doc.customer.account or "-"),
        ("Meter", doc.meter),
        ("Billing period", f"{day_text(doc.period_start)} - {day_text(doc.period_end)} ({doc.days} days)"),
        ("Tariff", f"{doc.tariff_name} ({doc.tariff} v{doc.tariff_version})"),
        ("Bill date", day_text(doc.issued_on)),
        ("Bill number", f"{doc.bill_id} (version {doc.version})"),
        used_line(doc),
    ]


def _number(kwh: Decimal | None) -> str:
    return "-" if kwh is None else f"{kwh:,.3f}"


def register_rows(doc: BillDocument) -> list[Row]:
    """Register | read at start | kWh | read at end | kWh | difference in kWh."""
    return [
        Row((r.label, _at_text(r.start_at, doc.timezone), _number(r.start_kwh), _at_text(r.end_at, doc.timezone),
             _number(r.end_kwh), _number(r.delta_kwh)))
        for r in doc.registers
    ]  # fmt: skip


def _quantity(line: DocLine) -> str:
    if line.quantity is None:
        return ""
    if line.is_tax:
        return f"{line.quantity:,}"  # the tax base, money
    unit = line.unit + ("s" if line.unit in ("day", "month") and line.quantity != 1 else "")
    q = f"{line.quantity:,.3f}" if line.unit in ("kWh", "kW") else f"{line.quantity:,}"
    return f"{q} {unit}"


def _rate(line: DocLine, currency: str) -> str:
    if line.rate is None:
        return ""
    if line.is_tax:
        return f"{line.rate} %"
    return f"{line.rate} {currency}/{line.unit}"


def charge_rows(doc: BillDocument) -> list[Row]:
    """Description | quantity | rate | amount: the charges, their subtotal, the taxes and the bill's total."""
    c = doc.currency
    rows = [Row((x.description, _quantity(x), _rate(x, c), f"{x.amount:,}")) for x in doc.charges]
    if doc.taxes:
        rows.append(Row(("Subtotal before taxes", "", "", f"{money(doc.subtotal, c):,}"), strong=True))
        rows += [Row((x.description, _quantity(x), _rate(x, c), f"{x.amount:,}")) for x in doc.taxes]
        rows.append(Row(("Taxes", "", "", f"{money(doc.taxes_total, c):,}"), strong=True))
    rows.append(Row((f"Current charges ({c})", "", "", f"{doc.total:,}"), strong=True))
    return rows


def estimated_text(doc: BillDocument) -> str:
    share = doc.estimated_share
    if share <= 0:
        return "Every interval of this bill was measured by your meter; nothing was estimated."
    n = doc.usage.estimated_intervals if doc.usage else 0
    detail = f" ({n} intervals)" if n else ""
    return (
        f"{share:.1%} of this bill's energy was estimated{detail}: readings that were missing or failed a check were "
        "replaced by estimates. The next bill corrects them if the meter's readings arrive."
    )


def statement_rows(doc: BillDocument) -> list[Row]:
    """The account summary: previous balance, payments, this bill, amount due."""
    s, c = doc.statement, doc.currency
    since = f" (statement of {day_text(s.as_of)})" if s.basis == "statement" and s.as_of else ""
    rows = [Row((f"Previous balance{since}", money_text(s.previous_balance, c)))]
    rows += [Row((f"Payment received {day_text(p.paid_on)}", money_text(-p.amount, c))) for p in s.payments]
    if not s.payments:
        rows.append(Row(("Payments received", money_text(Decimal(0), c))))
    rows.append(Row(("This bill", money_text(s.current_charges, c))))
    due = s.amount_due
    label = f"Amount due by {day_text(s.due_date)}" if due > 0 else "Nothing to pay: your account is in credit"
    rows.append(Row((label, money_text(due, c)), strong=True))
    return rows


def plan_lines(doc: BillDocument) -> list[str]:
    """Sentences on the account's installment plan (none without one)."""
    p = doc.plan
    if p is None:
        return []
    standing = {"good_standing": "in good standing", "broken": "broken (an installment was missed)",
                "completed": "completed"}.get(p.standing or "", p.state)  # fmt: skip
    out = [f"Installment plan {p.plan_id}: {standing}; {p.paid} of {p.installments} installments paid."]
    if p.next_due is not None and p.next_amount is not None and p.state == "active":
        out.append(
            f"Next installment (number {p.next_number}): {money_text(p.next_amount, doc.currency)}"
            f" due {day_text(p.next_due)}; {money_text(p.remaining, doc.currency)} left on the plan."
        )
    return out


def payment_lines(doc: BillDocument) -> list[str]:
    """How to pay: the amount, the date and the reference."""
    ref = format_reference(doc.payment_reference)
    due = doc.statement.amount_due
    if due <= 0:
        return [f"Payment reference {ref} (nothing to pay this time)."]
    return [
        f"Please pay {money_text(due, doc.currency)} by {day_text(doc.statement.due_date)}.",
        f"Quote the payment reference {ref} so your payment is matched to this bill.",
    ]
