"""Payments and balances from the billing system: wire models (pydantic) and idempotent storage.

A payment is idempotent by ``payment_id``: the same id with the same content is a no-op (``duplicate``); the same id
with different content is a ``conflict`` and changes nothing. A balance statement is idempotent by
(``account``, ``as_of``) the same way; the account's current balance and due date follow the newest ``as_of`` only,
so statements may arrive out of order. Amounts are decimal strings ("123.45"), never binary floats.

Input from outside (the API, imported files) is checked before anything is stored: timestamps are ISO 8601 text with
an offset (a bare epoch number is refused) inside the plausibility window of :mod:`amiflow.plausibility`
(``AMIFLOW_PLAUSIBLE_PAST_DAYS`` / ``AMIFLOW_PLAUSIBLE_FUTURE_S``; pass :func:`validation_context` to
``model_validate``), and a payment or statement whose currency is not its account's raises :class:`InputRefused`.
Models built in Python (the demo, tests) skip the window: it applies to validation with the context only.
"""

from __future__ import annotations

import csv
import enum
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

import psycopg
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Strict,
    StringConstraints,
    ValidationError,
    ValidationInfo,
)

from amiflow.errors import BillingError
from amiflow.plausibility import Window
from amiflow.settings import Settings

__all__ = [
    "BalanceIn",
    "ImportReport",
    "InputRefused",
    "PaymentIn",
    "Recorded",
    "billing_window",
    "import_csv",
    "record_balance",
    "record_payment",
    "validation_context",
]

_MONEY = r"^-?[0-9]{1,12}(\.[0-9]{1,2})?$"


def _nonzero(value: str) -> str:
    if Decimal(value) == 0:
        raise ValueError("amount must not be zero")
    return value


class InputRefused(BillingError):
    """A payment or balance statement contradicts what is stored (its currency is not the account's); nothing
    changed. ``field`` names the offending field."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


_CONTEXT_KEY = "plausibility"
_NUMBER = re.compile(r"\s*[-+]?[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?\s*")


def billing_window(settings: Settings) -> Window:
    """The plausibility window of billing input (``AMIFLOW_PLAUSIBLE_PAST_DAYS`` / ``AMIFLOW_PLAUSIBLE_FUTURE_S``)."""
    return Window.from_days(settings.plausible_past_days, settings.plausible_future_s)


def validation_context(window: Window, now: datetime | None = None) -> dict[str, Any]:
    """The ``context`` for ``PaymentIn/BalanceIn.model_validate*`` that checks timestamps against ``window``."""
    return {_CONTEXT_KEY: (window, now or datetime.now(UTC))}


def _text_not_number(value: Any, example: str) -> Any:
    if isinstance(value, date):  # built in Python
        return value
    if not isinstance(value, str) or _NUMBER.fullmatch(value):
        raise ValueError(f"expected ISO 8601 text such as {example!r}, not a number")
    return value


def _timestamp_text(value: Any) -> Any:
    return _text_not_number(value, "2026-11-01T10:00:00Z")


def _date_text(value: Any) -> Any:
    return _text_not_number(value, "2026-11-20")


def _plausible(value: datetime, info: ValidationInfo) -> datetime:
    checks = info.context.get(_CONTEXT_KEY) if isinstance(info.context, dict) else None
    if checks is not None:
        window, now = checks
        reason = window.reason(value, now)
        if reason is not None:
            raise ValueError(f"{value.isoformat()} is {reason} (AMIFLOW_PLAUSIBLE_PAST_DAYS / _FUTURE_S)")
    return value


def _plausible_date(value: date, info: ValidationInfo) -> date:
    """A due date lies within the window's past span either side of today: 0001-01-01 is not a due date."""
    checks = info.context.get(_CONTEXT_KEY) if isinstance(info.context, dict) else None
    if checks is not None:
        window, now = checks
        span = timedelta(seconds=window.past_s)
        today = now.date()
        if not today - span <= value <= today + span:
            raise ValueError(f"{value.isoformat()} is more than {span.days} days from today ({today.isoformat()})")
    return value


# lax parsing of ISO text (strict JSON mode would refuse a string), numbers refused before it, the window after it
Timestamp = Annotated[AwareDatetime, Strict(False), BeforeValidator(_timestamp_text), AfterValidator(_plausible)]
DueDate = Annotated[date, Strict(False), BeforeValidator(_date_text), AfterValidator(_plausible_date)]
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
    paid_at: Timestamp

    def amount_decimal(self) -> Decimal:
        return Decimal(self.amount)


class BalanceIn(BaseModel):
    """An account balance statement: amount owed (negative = credit) as of ``as_of``, and the due date."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    account: Identifier
    balance: Money
    currency: Currency
    as_of: Timestamp
    due_date: DueDate | None = None


class Recorded(enum.Enum):
    """What storing one payment or balance did."""

    CREATED = "created"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


Source = Literal["api", "file"]


def _ensure_account(conn: psycopg.Connection[Any], account: str, currency: str) -> None:
    """Create the account in ``currency`` when new; InputRefused when it exists in another currency."""
    conn.execute(
        "INSERT INTO amiflow.accounts (account, currency) VALUES (%s, %s) ON CONFLICT (account) DO NOTHING",
        (account, currency),
    )
    row = conn.execute("SELECT currency FROM amiflow.accounts WHERE account = %s", (account,)).fetchone()
    if row is not None and row[0] != currency:
        raise InputRefused(f"account {account!r} is kept in {row[0]}, not {currency}; nothing stored", "currency")


def record_payment(conn: psycopg.Connection[Any], p: PaymentIn, source: Source) -> Recorded:
    """Store ``p`` once (its own transaction, or the caller's when one is open); InputRefused (nothing stored) when
    its currency is not the account's."""
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
        # compared in SQL: a stored paid_at Python cannot hold (year 1 BC) must not turn the retry into a crash
        same = conn.execute(
            "SELECT account = %s AND amount = %s AND currency = %s AND paid_at = %s FROM amiflow.payments"
            " WHERE payment_id = %s",
            (p.account, amount, p.currency, p.paid_at, p.payment_id),
        ).fetchone()
    return Recorded.DUPLICATE if same == (True,) else Recorded.CONFLICT


def record_balance(conn: psycopg.Connection[Any], b: BalanceIn, source: Source) -> Recorded:
    """Store the statement ``b`` once; the account's current balance follows the newest ``as_of``. InputRefused
    (nothing stored) when its currency is not the account's."""
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


def import_csv(
    conn: psycopg.Connection[Any], text: str, *, window: Window | None = None, now: datetime | None = None
) -> ImportReport:
    """Import payments (header with ``payment_id,account,amount,currency,paid_at``) or balance statements (header
    with ``account,balance,currency,as_of[,due_date]``). Every valid row is stored; bad rows are reported by line.

    Timestamps must lie in ``window`` around ``now`` (default: the window of the default settings, now).
    """
    context = validation_context(window or billing_window(Settings.model_construct()), now)
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
            item = model.model_validate(
                {k: v for k, v in fields.items() if v is not None}, strict=False, context=context
            )
            result = (
                record_payment(conn, item, "file")
                if isinstance(item, PaymentIn)
                else record_balance(conn, item, "file")
            )
        except ValidationError as exc:
            errors.append((line, _first_error(exc)))
            continue
        except InputRefused as exc:
            errors.append((line, f"{exc.field}: {exc}"))
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
