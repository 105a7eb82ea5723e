"""Payments and balances from the billing system: wire models (pydantic) and idempotent storage.

A payment is idempotent by ``payment_id``: the same id with the same content is a no-op (``duplicate``); the same id
with different content is a ``conflict`` and changes nothing. A balance statement is idempotent by
(``account``, ``as_of``) the same way; the account's current balance and due date follow the newest ``as_of`` only,
so statements may arrive out of order. Amounts are decimal strings ("123.45"), never binary floats.
"""

from __future__ import annotations

import csv
import enum
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

import psycopg
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, ValidationError

__all__ = [
    "BalanceIn",
    "ImportReport",
    "PaymentIn",
    "Recorded",
    "import_csv",
    "record_balance",
    "record_payment",
]

_MONEY = r"^-?[0-9]{1,12}(\.[0-9]{1,2})?$"


def _nonzero(value: str) -> str:
    if Decimal(value) == 0:
        raise ValueError("amount must not be zero")
    return value


Money = Annotated[str, StringConstraints(strip_whitespace=True, pattern=_MONEY)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Identifier = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")
]


class PaymentIn(BaseModel):
    """A payment posted by billing: ``amount`` a decimal string (negative = reversal), ``paid_at`` with an offset."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    payment_id: Identifier
    account: Identifier
    amount: Annotated[Money, AfterValidator(_nonzero)]
    currency: Currency
    paid_at: Annotated[AwareDatetime, Field(strict=False)]

    def amount_decimal(self) -> Decimal:
        return Decimal(self.amount)


class BalanceIn(BaseModel):
    """An account balance statement: amount owed (negative = credit) as of ``as_of``, and the due date."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    account: Identifier
    balance: Money
    currency: Currency
    as_of: Annotated[AwareDatetime, Field(strict=False)]
    due_date: Annotated[date | None, Field(strict=False)] = None


class Recorded(enum.Enum):
    """What storing one payment or balance did."""

    CREATED = "created"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


Source = Literal["api", "file"]


def _ensure_account(conn: psycopg.Connection[Any], account: str, currency: str) -> None:
    conn.execute(
        "INSERT INTO amiflow.accounts (account, currency) VALUES (%s, %s) ON CONFLICT (account) DO NOTHING",
        (account, currency),
    )


def record_payment(conn: psycopg.Connection[Any], p: PaymentIn, source: Source) -> Recorded:
    """Store ``p`` once (its own transaction, or the caller's when one is open)."""
    amount = Decimal(p.amount)
    with conn.transaction():
        _ensure_account(conn, p.account, p.currency)
        row = conn.execute(
            "INSERT INTO amiflow.payments (payment_id, account, amount, currency, paid_at, source)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (payment_id) DO NOTHING RETURNING 1",
            (p.payment_id, p.account, amount, p.currency, p.paid_at, source),
        ).fetchone()
        if row is not None:
            return Recorded.CREATED
        old = conn.execute(
            "SELECT account, amount, currency, paid_at FROM amiflow.payments WHERE payment_id = %s", (p.payment_id,)
        ).fetchone()
    same = old is not None and (old[0], old[1], old[2], old[3]) == (p.account, amount, p.currency, p.paid_at)
    return Recorded.DUPLICATE if same else Recorded.CONFLICT


def record_balance(conn: psycopg.Connection[Any], b: BalanceIn, source: Source) -> Recorded:
    """Store the statement ``b`` once; the account's current balance follows the newest ``as_of``."""
    balance = Decimal(b.balance)
    with conn.transaction():
        _ensure_account(conn, b.account, b.currency)
        row = conn.execute(
            "INSERT INTO amiflow.balances (account, as_of, balance, currency, due_date, source)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (account, as_of) DO NOTHING RETURNING 1",
            (b.account, b.as_of, balance, b.currency, b.due_date, source),
        ).fetchone()
        if row is None:
            old = conn.execute(
                "SELECT balance, currency, due_date FROM amiflow.balances WHERE account = %s AND as_of = %s",
                (b.account, b.as_of),
            ).fetchone()
            same = old is not None and (old[0], old[1], old[2]) == (balance, b.currency, b.due_date)
            return Recorded.DUPLICATE if same else Recorded.CONFLICT
        conn.execute(
            "UPDATE amiflow.accounts SET balance = %s, currency = %s, due_date = %s, balance_as_of = %s,"
            " updated_at = now() WHERE account = %s AND (balance_as_of IS NULL OR balance_as_of < %s)",
            (balance, b.currency, b.due_date, b.as_of, b.account, b.as_of),
        )
    return Recorded.CREATED


@dataclass(frozen=True, slots=True)
class ImportReport:
    """Counts of a file import; ``errors`` holds (line number, message) of rows not stored."""

    kind: str
    created: int
    duplicates: int
    conflicts: int
    errors: tuple[tuple[int, str], ...]


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ())) or "row"
    return f"{loc}: {err.get('msg', 'invalid')}"


def import_csv(conn: psycopg.Connection[Any], text: str) -> ImportReport:
    """Import payments (header with ``payment_id,account,amount,currency,paid_at``) or balance statements (header
    with ``account,balance,currency,as_of[,due_date]``). Every valid row is stored; bad rows are reported by line.
    """
    reader = csv.DictReader(io.StringIO(text))
    header = set(reader.fieldnames or ())
    model: type[PaymentIn] | type[BalanceIn]
    if {"payment_id", "account", "amount", "currency", "paid_at"} <= header:
        model, kind = PaymentIn, "payments"
    elif {"account", "balance", "currency", "as_of"} <= header:
        model, kind = BalanceIn, "balances"
    else:
        raise ValueError(
            "expected a header with payment_id,account,amount,currency,paid_at (payments)"
            " or account,balance,currency,as_of[,due_date] (balances)"
        )
    tally = {r: 0 for r in Recorded}
    errors: list[tuple[int, str]] = []
    for line, row in _rows(reader):
        fields = {k: (v or None) for k, v in row.items() if k in model.model_fields}
        try:
            item = model.model_validate({k: v for k, v in fields.items() if v is not None}, strict=False)
            result = (
                record_payment(conn, item, "file")
                if isinstance(item, PaymentIn)
                else record_balance(conn, item, "file")
            )
        except ValidationError as exc:
            errors.append((line, _first_error(exc)))
            continue
        except ValueError as exc:
            errors.append((line, str(exc)))
            continue
        tally[result] += 1
        if result is Recorded.CONFLICT:
            errors.append((line, "same id already stored with different content (conflict, not changed)"))
    return ImportReport(
        kind, tally[Recorded.CREATED], tally[Recorded.DUPLICATE], tally[Recorded.CONFLICT], tuple(errors)
    )


def _rows(reader: csv.DictReader[str]) -> Iterable[tuple[int, dict[str, str]]]:
    for row in reader:
        yield reader.line_num, row
