"""Exact money arithmetic on integer arrays: the written rounding rule of every bill line.

Rule (docs/rating.md): a line's exact amount is ``rate * quantity`` with the rate an exact decimal from the tariff and
the quantity already rounded to its own precision (kWh and kW to 0.001, days exact). That exact product is rounded
ONCE to the currency's minor unit, half to even (banker's rounding, IEEE 754 roundTiesToEven / Decimal
ROUND_HALF_EVEN). A bill total is the sum of its rounded lines. No binary float ever holds money: rates become
integers scaled by ``10**rate_scale``, quantities integers in thousandths, and the products stay integers (int64,
or Python ints in an object array when int64 could overflow).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt

from amiflow.errors import RatingError

__all__ = [
    "MINOR_UNITS",
    "decimal_places",
    "format_minor",
    "format_scaled",
    "mul_round",
    "round_half_even_div",
    "scaled_int",
]

# ISO 4217 minor units of the currencies a tariff may name; others must be added here deliberately.
MINOR_UNITS: dict[str, int] = {
    "USD": 2, "EUR": 2, "GBP": 2, "CAD": 2, "AUD": 2, "NZD": 2, "CHF": 2, "SEK": 2, "NOK": 2, "DKK": 2,
    "PLN": 2, "CZK": 2, "ZAR": 2, "INR": 2, "BRL": 2, "MXN": 2, "JPY": 0, "KRW": 0, "KWD": 3, "BHD": 3,
}  # fmt: skip

_INT64_SAFE = 2**62

IntArray = npt.NDArray[Any]  # int64, or object (Python ints) when int64 could overflow


def decimal_places(value: Decimal) -> int:
    """Number of decimal places needed to hold ``value`` exactly (0 for integers)."""
    exponent = value.normalize().as_tuple().exponent
    if not isinstance(exponent, int):
        raise RatingError(f"not a finite decimal: {value}")
    return max(0, -exponent)


def scaled_int(value: Decimal, scale: int) -> int:
    """``value * 10**scale`` as an exact int; RatingError if ``value`` has more than ``scale`` decimals."""
    scaled = value.scaleb(scale)
    if scaled != scaled.to_integral_value():
        raise RatingError(f"{value} has more than {scale} decimal places")
    return int(scaled)


def round_half_even_div(num: IntArray, den: int | IntArray) -> IntArray:
    """``num / den`` rounded to the nearest integer, ties to even; exact for int64 and object arrays.

    ``den`` must be positive. Floor division leaves a remainder in [0, den), so negatives round correctly too.
    """
    num = np.asarray(num)
    if num.dtype == object:
        den = den if isinstance(den, int) else np.asarray(den).astype(object)  # exact Python ints throughout
        q, r = num // den, num % den
    else:
        q, r = np.divmod(num, den)
    twice = 2 * r
    up = (twice > den) | ((twice == den) & (q % 2 != 0))
    if num.dtype == object:
        return np.asarray(q + up.astype(np.int64).astype(object), dtype=object)
    return np.asarray(q + up.astype(q.dtype))


def mul_round(qty: IntArray, rate: int | IntArray, den: int | IntArray) -> IntArray:
    """``round_half_even(qty * rate / den)``, switching to Python ints when the int64 product could overflow."""
    qty = np.asarray(qty)
    rate_arr = np.asarray(rate)
    qmax = int(np.max(np.abs(qty))) if qty.size else 0
    rmax = int(np.max(np.abs(rate_arr))) if rate_arr.size else 0
    if qty.dtype != object and rate_arr.dtype != object and qmax * rmax < _INT64_SAFE:
        return round_half_even_div(qty.astype(np.int64) * rate_arr.astype(np.int64), den)
    product = qty.astype(object) * rate_arr.astype(object)
    out = round_half_even_div(product, den)
    return np.asarray(out, dtype=object)


def format_minor(amount: int, minor_units: int) -> str:
    """An integer of minor units as a decimal string (``12345, 2 -> "123.45"``), never via float."""
    return str(Decimal(int(amount)).scaleb(-minor_units).quantize(Decimal(1).scaleb(-minor_units)))


def format_scaled(value: int, scale: int) -> str:
    """An integer scaled by ``10**scale`` as a decimal string with exactly ``scale`` places."""
    return format_minor(value, scale)
