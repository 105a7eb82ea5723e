"""Helpers for the rating unit tests: tariffs from short dicts, usage matrices over whole local days."""

from __future__ import annotations

from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from rating.compile import CompiledTariff, compile_tariff
from rating.engine import RatedBlock, rate_block
from rating.local_time import local_midnight_ts
from rating.tariff import TariffSpec

BASE: dict[str, Any] = {
    "id": "t",
    "effective_from": "2020-01-01",
    "tou": {"default": "off"},
    "energy": {"rates": {"off": "0.10"}},
}


def tariff(**over: Any) -> CompiledTariff:
    """BASE with top-level keys replaced."""
    return compile_tariff(TariffSpec.model_validate({**BASE, **over}))


def axis_ts(start: date, end: date, tz: str = "UTC", step: int = 900) -> np.ndarray:
    zone = ZoneInfo(tz)
    return np.arange(local_midnight_ts(start, zone) + step, local_midnight_ts(end, zone) + 1, step, dtype=np.int64)


def rate(
    t: CompiledTariff, start: date, end: date, imp: Any, exp: Any = None, tz: str = "UTC", **kw: Any
) -> RatedBlock:
    ts = axis_ts(start, end, tz)
    imp = np.asarray(imp, dtype=float)
    if imp.ndim == 0:
        imp = np.full((1, len(ts)), float(imp))
    if exp is not None:
        exp = np.asarray(exp, dtype=float)
        if exp.ndim == 0:
            exp = np.full(imp.shape, float(exp))
    return rate_block(t, ts, imp, exp, tz=tz, period_start=start, period_end=end, **kw)


def lines(block: RatedBlock, row: int = 0) -> dict[str, tuple[int, int]]:
    """code -> (quantity in thousandths, amount in cents) for one meter, zero lines included."""
    return {
        s.code: (int(block.quantity_milli[row, i]), int(block.amount_minor[row, i])) for i, s in enumerate(block.lines)
    }


@pytest.fixture
def april() -> tuple[date, date]:
    """April 2024: 30 days, starts on a Monday, 22 weekdays, no US federal holiday."""
    return date(2024, 4, 1), date(2024, 5, 1)
