"""What a customer's bill document says, independent of how it is drawn (PDF or HTML) or where it was read from.

A :class:`BillDocument` is built from a stored bill and the store around it (:mod:`billing_bridge.customer.
documents_data`) and rendered by :mod:`~billing_bridge.customer.documents_pdf` and
:mod:`~billing_bridge.customer.documents_html`. It round-trips through JSON (:meth:`BillDocument.to_json` /
:meth:`BillDocument.from_json`, money and kWh as decimal strings), which is how an e-bill freezes the document it was
queued with: every retry renders the same bytes.

Money is :class:`~decimal.Decimal`, rounded only by :func:`money` - the rating engine's rule (rating/money.py): once,
half to even, to the currency's minor unit. Bill lines arrive already rounded by the engine; sums of rounded amounts
need no further rounding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from rating.money import MINOR_UNITS

__all__ = [
    "BillDocument",
    "Customer",
    "DailyUsage",
    "DocLine",
    "PaymentLine",
    "PlanStatus",
    "RegisterRead",
    "Statement",
    "money",
]


def money(value: Decimal | str | int, currency: str) -> Decimal:
    """``value`` rounded once, half to even, to the minor unit of ``currency`` (the rating engine's rule)."""
    places = MINOR_UNITS.get(currency, 2)
    return Decimal(value).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True, slots=True)
class DocLine:
    """One bill line as the customer reads it; ``is_tax`` for the tariff's tax lines (their rate is a percent)."""

    code: str
    description: str
    quantity: Decimal | None
    unit: str
    rate: Decimal | None
    amount: Decimal
    is_tax: bool = False


@dataclass(frozen=True, slots=True)
class RegisterRead:
    """A register (``1-0:1.8.0`` import, ``1-0:2.8.0`` export) read near the period's start and end, kWh."""

    obis: str
    label: str
    start_at: datetime | None
    start_kwh: Decimal | None
    end_at: datetime | None
    end_kwh: Decimal | None

    @property
    def delta_kwh(self) -> Decimal | None:
        if self.start_kwh is None or self.end_kwh is None:
            return None
        return self.end_kwh - self.start_kwh


@dataclass(frozen=True, slots=True)
class DailyUsage:
    """kWh imported per local day and TOU period of the bill's tariff (``kwh[day][period]``), and exported per day."""

    periods: tuple[str, ...]
    days: tuple[date, ...]
    kwh: tuple[tuple[Decimal, ...], ...]
    export_kwh: tuple[Decimal, ...] = ()
    estimated_intervals: int = 0

    def day_total(self, i: int) -> Decimal:
        return sum(self.kwh[i], Decimal(0))

    def period_total(self, p: int) -> Decimal:
        return sum((row[p] for row in self.kwh), Decimal(0))


@dataclass(frozen=True, slots=True)
class PaymentLine:
    """A payment received (negative: a reversal)."""

    paid_on: date
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Statement:
    """The account side: what was owed before, what was paid, and what is due now.

    ``basis`` is ``statement`` (the billing system's balance statement of ``as_of``) or ``bills`` (amiflow's earlier
    bills less payments, for an account billing has stated no balance for).
    """

    previous_balance: Decimal
    payments: tuple[PaymentLine, ...]
    current_charges: Decimal
    due_date: date
    basis: str = "bills"
    as_of: date | None = None

    @property
    def payments_total(self) -> Decimal:
        return sum((p.amount for p in self.payments), Decimal(0))

    @property
    def amount_due(self) -> Decimal:
        return self.previous_balance - self.payments_total + self.current_charges


@dataclass(frozen=True, slots=True)
class PlanStatus:
    """An installment plan of the account on the bill's issue day."""

    plan_id: int
    state: str  # active, completed, broken, cancelled
    standing: str | None  # good_standing, completed, broken (None when not judged)
    installments: int
    paid: int
    next_number: int | None
    next_due: date | None
    next_amount: Decimal | None
    remaining: Decimal


@dataclass(frozen=True, slots=True)
class Customer:
    """Who the bill is addressed to (``name`` None: no contact data in the registry)."""

    account: str | None
    name: str | None = None
    address: tuple[str, ...] = ()
    email: str | None = None


@dataclass(frozen=True, slots=True)
class BillDocument:
    """Everything one bill document shows."""

    bill_id: str
    version: int
    customer: Customer
    meter: str
    timezone: str
    currency: str
    issued_on: date
    period_start: date
    period_end: date  # the last billed day (inclusive), as in the bill JSON
    tariff: str
    tariff_version: int
    tariff_name: str
    lines: tuple[DocLine, ...]
    total: Decimal
    estimated_share: float
    kwh_import: Decimal
    kwh_export: Decimal
    kwh_by_period: tuple[tuple[str, Decimal], ...]
    registers: tuple[RegisterRead, ...]
    usage: DailyUsage | None
    statement: Statement
    payment_reference: str
    plan: PlanStatus | None = None
    issued_at: datetime | None = None
    notes: tuple[str, ...] = field(default=())
    usage_unit: str = "kWh"  # the tariff's unit (MWh of heat, m3 of water): what ``usage_quantity`` is in
    usage_quantity: Decimal | None = None  # None: ``kwh_import``

    @property
    def used(self) -> tuple[Decimal, str]:
        """(quantity, unit) used in the period: kWh, or the tariff's own unit."""
        return (self.kwh_import if self.usage_quantity is None else self.usage_quantity), self.usage_unit

    @property
    def days(self) -> int:
        return (self.period_end - self.period_start).days + 1

    @property
    def charges(self) -> tuple[DocLine, ...]:
        return tuple(line for line in self.lines if not line.is_tax)

    @property
    def taxes(self) -> tuple[DocLine, ...]:
        return tuple(line for line in self.lines if line.is_tax)

    @property
    def subtotal(self) -> Decimal:
        return sum((line.amount for line in self.charges), Decimal(0))

    @property
    def taxes_total(self) -> Decimal:
        return sum((line.amount for line in self.taxes), Decimal(0))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (decimals, dates and datetimes as strings); :meth:`from_json` reads it back."""
        out: dict[str, Any] = _encode(self)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BillDocument:
        return _decode_document(data)


def _encode(value: Any) -> Any:
    if isinstance(value, Decimal | date):  # datetime is a date
        return str(value) if isinstance(value, Decimal) else value.isoformat()
    if isinstance(value, tuple | list):
        return [_encode(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {name: _encode(getattr(value, name)) for name in value.__dataclass_fields__}
    return value


def _dec(v: Any) -> Decimal | None:
    return None if v is None else Decimal(v)


def _day(v: Any) -> date | None:
    return None if v is None else date.fromisoformat(v)


def _at(v: Any) -> datetime | None:
    return None if v is None else datetime.fromisoformat(v)


def _decode_document(d: dict[str, Any]) -> BillDocument:
    u = d.get("usage")
    usage = None
    if u is not None:
        usage = DailyUsage(
            tuple(u["periods"]), tuple(date.fromisoformat(x) for x in u["days"]),
            tuple(tuple(Decimal(x) for x in row) for row in u["kwh"]), tuple(Decimal(x) for x in u["export_kwh"]),
            int(u["estimated_intervals"]),
        )  # fmt: skip
    s = d["statement"]
    statement = Statement(
        Decimal(s["previous_balance"]), tuple(PaymentLine(date.fromisoformat(p["paid_on"]), Decimal(p["amount"]))
                                              for p in s["payments"]),
        Decimal(s["current_charges"]), date.fromisoformat(s["due_date"]), s["basis"], _day(s["as_of"]),
    )  # fmt: skip
    p = d.get("plan")
    plan = None
    if p is not None:
        plan = PlanStatus(
            int(p["plan_id"]), p["state"], p["standing"], int(p["installments"]), int(p["paid"]), p["next_number"],
            _day(p["next_due"]), _dec(p["next_amount"]), Decimal(p["remaining"]),
        )  # fmt: skip
    c = d["customer"]
    return BillDocument(
        bill_id=d["bill_id"], version=int(d["version"]),
        customer=Customer(c["account"], c["name"], tuple(c["address"]), c["email"]),
        meter=d["meter"], timezone=d["timezone"], currency=d["currency"],
        issued_on=date.fromisoformat(d["issued_on"]), period_start=date.fromisoformat(d["period_start"]),
        period_end=date.fromisoformat(d["period_end"]), tariff=d["tariff"], tariff_version=int(d["tariff_version"]),
        tariff_name=d["tariff_name"],
        lines=tuple(
            DocLine(x["code"], x["description"], _dec(x["quantity"]), x["unit"], _dec(x["rate"]), Decimal(x["amount"]),
                    bool(x["is_tax"]))
            for x in d["lines"]
        ),
        total=Decimal(d["total"]), estimated_share=float(d["estimated_share"]), kwh_import=Decimal(d["kwh_import"]),
        kwh_export=Decimal(d["kwh_export"]), kwh_by_period=tuple((k, Decimal(v)) for k, v in d["kwh_by_period"]),
        registers=tuple(
            RegisterRead(r["obis"], r["label"], _at(r["start_at"]), _dec(r["start_kwh"]), _at(r["end_at"]),
                         _dec(r["end_kwh"]))
            for r in d["registers"]
        ),
        usage=usage, statement=statement, payment_reference=d["payment_reference"], plan=plan,
        issued_at=_at(d.get("issued_at")), notes=tuple(d.get("notes") or ()),
        usage_unit=d.get("usage_unit", "kWh"), usage_quantity=_dec(d.get("usage_quantity")),
    )  # fmt: skip
