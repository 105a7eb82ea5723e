"""Bill lines as columns: each line is the same for every meter of a block, with a quantity and an amount per meter.

Quantities are integers in thousandths of the unit (kWh, kW, days, months); amounts are integers in the currency's
minor unit, rounded once per line by rating.money. Nothing here holds money in a float.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from rating.compile import CompiledTariff
from rating.money import IntArray, mul_round

__all__ = ["LineSpec", "LineTable"]

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class LineSpec:
    """One column of a RatedBlock: the same line for every meter of the block."""

    code: str
    description: str
    category: str  # energy | demand | export | fixed | minimum | tax
    unit: str  # kWh | kW | month | day | <currency> (tax base)
    rate: Decimal | None
    rate_unit: str


class LineTable:
    """Accumulates the line columns of a block (one entry per line, a value per meter); money stays integral."""

    def __init__(self, tariff: CompiledTariff) -> None:
        self.t = tariff
        self.specs: list[LineSpec] = []
        self.qty: list[I64] = []
        self.amt: list[IntArray] = []

    def add(self, spec: LineSpec, qty_milli: I64, amount: IntArray) -> None:
        """Append a line: [M] quantities (thousandths of the unit) and [M] amounts (minor units)."""
        self.specs.append(spec)
        self.qty.append(np.asarray(qty_milli, dtype=np.int64))
        self.amt.append(amount)

    def per_unit(
        self, spec: LineSpec, qty_milli: I64, rate_scaled: int, sign: int = 1, share: tuple[I64, I64] | None = None
    ) -> None:
        """Append a line priced per unit at the scaled rate ``rate_scaled`` (``sign`` -1 for a credit); ``share``
        (numerator, denominator) [M] prorates the amount: rate x quantity x num / den, still rounded once."""
        # qty in 1e-3 units x rate in 1e-scale -> 1e-(3+scale); one rounding to the minor unit
        den = 10 ** (3 + self.t.rate_scale - self.t.minor_units)
        if share is None:
            self.add(spec, qty_milli, sign * mul_round(qty_milli, rate_scaled, den))
            return
        num, whole = share
        scaled = np.asarray(qty_milli, dtype=np.int64) * np.asarray(num, dtype=np.int64)
        self.add(spec, qty_milli, sign * mul_round(scaled, rate_scaled, den * np.maximum(whole, 1)))

    def total(self, categories: frozenset[str]) -> IntArray:
        """[M] sum of the lines whose category or code is in ``categories``."""
        pairs = zip(self.specs, self.amt, strict=True)
        cols = [a for s, a in pairs if s.category in categories or s.code in categories]
        if not cols:
            return np.zeros(len(self.qty[0]), dtype=np.int64) if self.qty else np.zeros(0, np.int64)
        out = cols[0]
        for c in cols[1:]:
            out = out + c
        return out

    def quantities(self, m: int) -> I64:
        """[M, L] quantities of every line, thousandths of the unit."""
        return np.stack(self.qty, axis=1) if self.qty else np.zeros((m, 0), dtype=np.int64)

    def amounts(self, m: int) -> IntArray:
        """[M, L] amounts of every line in minor units (int64, or object when a column holds Python ints)."""
        cols = self.amt
        if not cols:
            return np.zeros((m, 0), dtype=np.int64)
        if any(np.asarray(c).dtype == object for c in cols):
            return np.stack([np.asarray(c, dtype=object) for c in cols], axis=1)
        return np.stack([np.asarray(c, dtype=np.int64) for c in cols], axis=1)
