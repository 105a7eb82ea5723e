"""Receivables by age: what is still open of each debt (payments applied first-in first-out, as
:mod:`billing_bridge.arrears` applies them) and the overdue part in the usual age bands of collection reports.

| band | days past due |
|---|---|
| 0-30 | 0 to 30 (a debt due yesterday is 1 day past due) |
| 31-60 | 31 to 60 |
| 61-90 | 61 to 90 |
| >90 | more than 90 |

Pure: debts and payments in, amounts out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from decimal import Decimal

from billing_bridge.arrears import Debt, Payment

__all__ = ["AGE_BANDS", "age_bands", "band_of", "open_debts"]

#: Band names, youngest first, with their inclusive (lowest, highest) days past due; None = no upper bound.
AGE_BANDS: tuple[tuple[str, int, int | None], ...] = (("0-30", 0, 30), ("31-60", 31, 60), ("61-90", 61, 90),
                                                     (">90", 91, None))  # fmt: skip
_ZERO = Decimal(0)


def open_debts(debts: Iterable[Debt], payments: Iterable[Payment]) -> list[tuple[Debt, Decimal]]:
    """Each debt (oldest first) with what is still open of it after the payments, applied FIFO; a net negative
    (more reversed than paid) opens nothing beyond the debts themselves."""
    items = sorted(debts, key=lambda d: (d.due_date, d.ref))
    left = max(sum((p.amount for p in payments), _ZERO), _ZERO)
    out = []
    for d in items:
        take = min(left, d.amount)
        left -= take
        out.append((d, d.amount - take))
    return out


def band_of(days_past_due: int) -> int:
    """The index in :data:`AGE_BANDS` of a debt ``days_past_due`` days past its due date (0 or more)."""
    for i, (_, low, high) in enumerate(AGE_BANDS):
        if days_past_due >= low and (high is None or days_past_due <= high):
            return i
    raise ValueError(f"days past due must be 0 or more, not {days_past_due}")


def age_bands(debts: Sequence[Debt], payments: Sequence[Payment], today: date) -> tuple[Decimal, ...]:
    """The overdue amount (debts due before ``today``, what is open of them) in each band of :data:`AGE_BANDS`."""
    out = [_ZERO] * len(AGE_BANDS)
    for d, remaining in open_debts(debts, payments):
        if remaining > 0 and d.due_date < today:
            out[band_of((today - d.due_date).days)] += remaining
    return tuple(out)
