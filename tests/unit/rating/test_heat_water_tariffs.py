"""Heat per MWh and water per m3 rate to the cent on channels in Wh and m3 (rating/tariffs/heat_per_mwh.toml and
water_per_m3.toml). The expected bills are worked out by hand from the tariff documents (their rates read with
tomllib, the arithmetic in Decimal, the written rounding rule of docs/rating.md: the quantity to 0.001 of the
billed unit, then each line once to the cent, half to even), never from the engine."""

from __future__ import annotations

import tomllib
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from rating import compile_tariff, rate_block
from rating.bill import bill_json
from rating.tariff import TariffSpec
from rating.tariff_files import load_tariff

TARIFFS = Path(__file__).resolve().parents[3] / "rating" / "tariffs"
START, END = date(2026, 11, 1), date(2026, 12, 1)
CENT = Decimal("0.01")


def _axis() -> np.ndarray:
    lo = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp())
    return np.arange(lo + 900, lo + 30 * 86_400 + 1, 900, dtype=np.int64)  # 2880 interval ends


def _document(name: str) -> dict[str, object]:
    return tomllib.loads((TARIFFS / name).read_text())


def _cents(x: Decimal) -> Decimal:
    return x.quantize(CENT, rounding=ROUND_HALF_EVEN)


def _spread(total_base: int, n: int, scale: float) -> np.ndarray:
    """``total_base`` whole base units (Wh, litres) spread unevenly over ``n`` intervals, as floats in ``scale``."""
    weights = 1.0 + 0.5 * np.sin(np.arange(n) / 37.0)
    whole = np.floor(weights / weights.sum() * total_base).astype(np.int64)
    whole[-1] += total_base - whole.sum()
    return whole.astype(np.float64) * scale


def _bill(file: str, usage: np.ndarray) -> dict[str, object]:
    tariff = compile_tariff(load_tariff(TARIFFS / file)[0])
    block = rate_block(tariff, _axis(), usage[None, :], tz="UTC", period_start=START, period_end=END)
    return bill_json(block, 0, meter="M1")


def test_heat_per_mwh_on_a_channel_in_wh() -> None:
    doc = _document("heat_per_mwh.toml")
    assert (doc["unit"], doc["channel"]) == ("MWh", "6-0:1.29.0")
    usage_wh = _spread(12_345_678, 2880, 1.0)  # 12.345678 MWh of heat
    rate = Decimal(doc["energy"]["rates"]["all"][0])  # type: ignore[index]
    fixed = Decimal(doc["fixed"][0]["amount"])  # type: ignore[index]
    tax_pct = Decimal(doc["taxes"][0]["percent"])  # type: ignore[index]
    mwh = Decimal("12.346")  # 12.345678 MWh to 0.001 MWh
    energy = _cents(mwh * rate)  # 12.346 x 98.40 = 1214.8464 -> 1214.85
    tax = _cents((energy + fixed) * tax_pct / 100)  # 6.25 % of 1233.35 = 77.084375 -> 77.08
    assert (energy, tax) == (Decimal("1214.85"), Decimal("77.08"))
    bill = _bill("heat_per_mwh.toml", usage_wh)
    lines = {line["code"]: line for line in bill["lines"]}  # type: ignore[attr-defined]
    assert lines["energy.all"]["quantity"] == "12.346" and lines["energy.all"]["unit"] == "MWh"
    assert lines["energy.all"]["amount"] == str(energy) and lines["sales_tax"]["amount"] == str(tax)
    assert bill["total"] == str(energy + fixed + tax) == "1310.43"
    assert bill["tariff"] == {"id": "heat-mwh", "version": 1, "unit": "MWh"}
    assert bill["determinants"]["import_kwh"] == "12.346"  # type: ignore[index]  # in the tariff's unit


def test_water_per_m3_in_two_blocks_on_a_channel_in_m3() -> None:
    doc = _document("water_per_m3.toml")
    assert (doc["unit"], doc["channel"]) == ("m3", "8-0:1.29.0")
    usage_m3 = _spread(14_237, 2880, 0.001)  # 14.237 m3, in whole litres
    block1, block2 = (Decimal(r) for r in doc["energy"]["rates"]["all"])  # type: ignore[index]
    limit = Decimal(doc["energy"]["tier_limits_kwh"][0])  # type: ignore[index]  # m3 per month
    fixed = Decimal(doc["fixed"][0]["amount"])  # type: ignore[index]
    t1 = _cents(limit * block1)  # 10 m3 x 2.85 = 28.50
    t2 = _cents((Decimal("14.237") - limit) * block2)  # 4.237 m3 x 4.10 = 17.3717 -> 17.37
    bill = _bill("water_per_m3.toml", usage_m3)
    lines = {line["code"]: line for line in bill["lines"]}  # type: ignore[attr-defined]
    assert (lines["energy.all.t1"]["quantity"], lines["energy.all.t2"]["quantity"]) == ("10.000", "4.237")
    assert lines["energy.all.t1"]["unit"] == "m3" and lines["energy.all.t1"]["rate"] == "2.85"
    assert (lines["energy.all.t1"]["amount"], lines["energy.all.t2"]["amount"]) == (str(t1), str(t2))
    assert bill["total"] == str(t1 + t2 + fixed) == "52.62"


def test_the_same_water_in_kwh_units_would_be_a_thousand_times_off() -> None:
    """The unit matters: the engine's kWh default reads the same m3 array as Wh (a guard against a lost unit)."""
    usage_m3 = _spread(14_237, 2880, 0.001)
    spec = load_tariff(TARIFFS / "water_per_m3.toml")[0]
    as_kwh = spec.model_copy(update={"unit": "kWh"})
    block = rate_block(compile_tariff(as_kwh), _axis(), usage_m3[None, :], tz="UTC", period_start=START,
                       period_end=END)  # fmt: skip
    assert bill_json(block, 0, meter="M1")["total"] != "52.62"


def test_units_are_checked() -> None:
    base = load_tariff(TARIFFS / "water_per_m3.toml")[0].model_dump()
    with pytest.raises(ValidationError, match="interval channel"):
        TariffSpec.model_validate(base | {"channel": "8-0:1.8.0"})
    with pytest.raises(ValidationError, match="unit"):
        TariffSpec.model_validate(base | {"unit": "litre"})
    with pytest.raises(ValidationError, match="need unit kWh"):
        TariffSpec.model_validate(base | {"export": {"mode": "net_metering"}})
    assert TariffSpec.model_validate(base | {"channel": None}).usage_channel == "8-0:1.29.0"
    assert TariffSpec.model_validate(base | {"channel": None, "unit": "kWh"}).usage_channel == "1-0:1.29.0"
