from decimal import ROUND_HALF_EVEN, Decimal

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from amiflow.errors import RatingError
from rating.money import decimal_places, format_minor, mul_round, round_half_even_div, scaled_int


def test_half_even_ties_and_negatives() -> None:
    got = round_half_even_div(np.array([5, 15, 25, 35, -5, -15, -25, 14, 16, -16]), 10)
    assert got.tolist() == [0, 2, 2, 4, 0, -2, -2, 1, 2, -2]


@given(st.integers(-(10**15), 10**15), st.integers(1, 10**9))
def test_matches_decimal_half_even(num: int, den: int) -> None:
    expected = int((Decimal(num) / Decimal(den)).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    assert int(round_half_even_div(np.array([num]), den)[0]) == expected


def test_overflow_switches_to_exact_python_ints() -> None:
    qty = np.array([2**40, 3])
    out = mul_round(qty, 2**30, 10)
    assert out.dtype == object
    assert int(out[0]) == int((Decimal(2**70) / 10).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    assert int(out[1]) == round((3 * 2**30) / 10)


def test_scaling_and_formatting() -> None:
    assert decimal_places(Decimal("0.12300")) == 3
    assert decimal_places(Decimal("12")) == 0
    assert scaled_int(Decimal("0.41234"), 5) == 41234
    try:
        scaled_int(Decimal("0.123456"), 5)
    except RatingError:
        pass
    else:
        raise AssertionError("more decimals than the scale must be refused")
    assert format_minor(12345, 2) == "123.45"
    assert format_minor(-5, 2) == "-0.05"
    assert format_minor(0, 2) == "0.00"
    assert format_minor(7, 0) == "7"
    assert format_minor(1234, 3) == "1.234"
