"""OpenEI Utility Rate Database (URDB, API version 7/8) rate items -> amiflow TariffSpec.

Accepted input: one rate item (a JSON object with ``energyratestructure`` ...), or the API's response
``{"items": [...]}``. Conversions (also in docs/rating.md):

* ``energyweekdayschedule`` / ``energyweekendschedule``: 12 x 24 matrices of 0-based period indices, taken as is
  (periods are named ``p0``, ``p1``, ...). URDB has no holiday schedule: holidays follow the weekday schedule unless
  the caller adds a holiday calendar (they are billed as the day of week they fall on).
* ``energyratestructure[period][tier]``: ``rate + adj`` (exact decimals as written in the JSON) $/kWh; ``max`` is the
  tier's upper bound; ``unit`` ``kWh`` = per month, ``kWh daily`` (or ``kWh/day``) = per day (multiplied by the
  billed days, the baseline-allowance convention). Periods sharing one set of bounds count the month's total energy
  (URDB, SAM); periods with bounds of their own keep them (rating.tiers); other tier units (``kWh/kW``) are
  rejected. ``sell`` becomes an export credit rate.
* ``demandratestructure`` + ``demandweekdayschedule`` / ``demandweekendschedule``: a TOU demand charge
  (``rate + adj`` $/kW, ``max`` kW tier bounds); ``flatdemandstructure`` + ``flatdemandmonths``: a monthly-peak
  demand charge whose rate depends on the month; ``demandwindow`` (minutes; 15/30/60) the demand interval;
  ``demandratchetpercentage`` (12 percents by calendar month of the earlier peak) with an 11-month look-back, or
  ``lookbackPercent`` with ``lookbackRange`` (months) or ``lookbackMonths`` (12 booleans: the months whose peaks
  count, 11-month look-back); percents up to 1 are read as fractions. A ratchet needs the flat (monthly) demand.
* ``fixedchargefirstmeter`` with ``fixedchargeunits`` ``$/month`` or ``$/day``; ``mincharge`` with
  ``minchargeunits`` ``$/month`` or ``$/day``. ``$/year`` is rejected (not a monthly charge).
* ``usenetmetering`` true = net metering at the import rate.
* ``startdate`` / ``enddate`` (epoch seconds) -> effective dates (UTC calendar date); ``label`` -> tariff id.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from amiflow.errors import RatingError
from rating.tariff import (
    DemandSpec,
    EnergySpec,
    ExportSpec,
    FixedSpec,
    MinimumSpec,
    TariffSpec,
    TouSpec,
)

__all__ = ["is_urdb", "urdb_to_specs"]

_KEYS = {"energyratestructure", "energyweekdayschedule", "flatdemandstructure", "fixedchargefirstmeter"}


def is_urdb(data: Any) -> bool:
    """True for a URDB rate item or an API response with an ``items`` list."""
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        return True
    return isinstance(data, dict) and bool(_KEYS & set(data))


def _dec(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise RatingError(f"{where}: not a number: {value!r}")
    # str() of a float is its shortest round-trip form, i.e. the decimal written in the JSON
    try:
        out = Decimal(str(value))
    except ArithmeticError:
        out = Decimal("NaN")
    if not out.is_finite():
        raise RatingError(f"{where}: not a number: {str(value)[:40]!r}")
    return out


def _int(value: Any, where: str) -> int:
    """A whole number (JSON integer, or text of one); RatingError naming ``where`` otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit() and len(value) < 20:
        return int(value)
    raise RatingError(f"{where}: expected a whole number, got {str(value)[:40]!r}")


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise RatingError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _tiers(
    structure: list[Any], where: str, units_ok: dict[str, str]
) -> tuple[dict[str, list[Decimal]], dict[str, list[Decimal]], str, dict[str, Decimal]]:
    """(rates per period, tier bounds per period, basis, sell rates) of a URDB rate structure."""
    rates: dict[str, list[Decimal]] = {}
    bounds: dict[str, list[Decimal]] = {}
    basis = {"month"}
    sell: dict[str, Decimal] = {}
    for p, tiers in enumerate(_list(structure, where)):
        name = f"p{p}"
        if not isinstance(tiers, list) or not tiers:
            raise RatingError(f"{where}[{p}]: expected a list of tiers")
        row, maxes = [], []
        for k, tier in enumerate(tiers):
            w = f"{where}[{p}][{k}]"
            if not isinstance(tier, dict):
                raise RatingError(f"{w}: expected a tier object with a rate")
            row.append(_dec(tier.get("rate", 0), w + ".rate") + _dec(tier.get("adj", 0), w + ".adj"))
            if "max" in tier and k < len(tiers) - 1:
                maxes.append(_dec(tier["max"], w + ".max"))
            unit = str(tier.get("unit", next(iter(units_ok))))
            if unit not in units_ok:
                raise RatingError(f"{w}: tier unit {unit!r} is not supported (supported: {', '.join(units_ok)})")
            basis.add(units_ok[unit]) if "max" in tier else None
            if k == 0 and "sell" in tier:
                sell[name] = _dec(tier["sell"], w + ".sell")
        if len(maxes) != len(row) - 1:
            raise RatingError(f"{where}[{p}]: every tier but the last needs a 'max'")
        bounds[name] = maxes
        rates[name] = row
    basis.discard("month") if len(basis) > 1 else None
    if len(basis) > 1:
        raise RatingError(f"{where}: mixes monthly and daily tier limits")
    return rates, bounds, basis.pop(), sell


def _matrix(item: dict[str, Any], key: str, n: int) -> list[list[int]]:
    m = item.get(key)
    if not isinstance(m, list) or len(m) != 12 or any(not isinstance(r, list) or len(r) != 24 for r in m):
        raise RatingError(f"URDB {key}: expected 12 rows of 24 period indices")
    if any(not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < n for r in m for v in r):
        raise RatingError(f"URDB {key}: period index outside the {n} periods of the rate structure")
    return [list(r) for r in m]


def _per(units: Any, what: str) -> str:
    table = {"$/month": "month", "$/day": "day"}
    if not isinstance(units, str) or units not in table:
        raise RatingError(f"URDB {what} units {units!r} not supported (use $/month or $/day)")
    return table[units]


def _shared(bounds: dict[str, list[Decimal]], where: str) -> list[Decimal]:
    """The bounds all periods share (a period without tiers takes the others'); demand tiers need one set."""
    found = {tuple(b) for b in bounds.values() if b}
    if len(found) > 1:
        raise RatingError(f"{where}: periods have different kW tier bounds {sorted(found)}; not supported")
    return list(found.pop()) if found else []


def _percent(value: Any, where: str) -> Decimal:
    """A URDB percentage: a fraction (0.8) or a percent (80); values up to 1 are fractions."""
    pct = _dec(value, where)
    return pct * 100 if pct <= 1 else pct


def _ratchet(item: dict[str, Any]) -> tuple[list[Decimal] | None, int]:
    """(percent by calendar month of the earlier peak, look-back months) of a URDB item, or (None, 11)."""
    percentages = _list(item.get("demandratchetpercentage") or [], "URDB demandratchetpercentage")
    monthly = [_percent(x or 0, "URDB demandratchetpercentage") for x in percentages]
    look = _lookback(item)
    if monthly and any(monthly) and look[0] is not None:
        raise RatingError("URDB demandratchetpercentage and lookbackPercent both set: one ratchet only")
    if monthly and any(monthly):
        if len(monthly) != 12:
            raise RatingError("URDB demandratchetpercentage: expected 12 values")
        return monthly, 11
    return look


def _lookback(item: dict[str, Any]) -> tuple[list[Decimal] | None, int]:
    raw = _field(item, "lookbackPercent")
    if not raw:
        return None, 11
    pct = _percent(raw, "URDB lookbackPercent")
    months = _list(_field(item, "lookbackMonths") or [], "URDB lookbackMonths")
    span = _int(_field(item, "lookbackRange") or 0, "URDB lookbackRange")
    if span and any(months):
        raise RatingError("URDB lookbackRange and lookbackMonths both set: one look-back only")
    if any(months):
        if len(months) != 12:
            raise RatingError("URDB lookbackMonths: expected 12 booleans")
        return [pct if m else Decimal(0) for m in months], 11
    if not 1 <= span <= 36:
        raise RatingError(f"URDB lookbackRange {span}: expected 1..36 months with lookbackPercent")
    return [pct] * 12, span


def _field(item: dict[str, Any], key: str) -> Any:
    """URDB's camelCase field, or its lower-case spelling (both occur in exports)."""
    return item.get(key, item.get(key.lower()))


def _demand(item: dict[str, Any]) -> list[DemandSpec]:
    out: list[DemandSpec] = []
    window = _int(item.get("demandwindow") or 15, "URDB demandwindow")
    if window not in (15, 30, 60):
        raise RatingError(f"URDB demandwindow {window} min: supported 15, 30, 60")
    if item.get("demandunits", "kW") != "kW":
        raise RatingError(f"URDB demandunits {item.get('demandunits')!r}: only kW is supported")
    by_month, look = _ratchet(item)
    units = {"kW": "month"}
    if item.get("demandratestructure"):
        rates, period_bounds, _, _ = _tiers(item["demandratestructure"], "URDB demandratestructure", units)
        bounds = _shared(period_bounds, "URDB demandratestructure")
        n = len(rates)
        tou = TouSpec(
            periods=list(rates),
            weekday=_matrix(item, "demandweekdayschedule", n),
            weekend=_matrix(item, "demandweekendschedule", n),
        )
        out.append(DemandSpec(code="demand_tou", description="TOU demand charge", rates=rates, tier_limits_kw=bounds,
                              tou=tou, interval_min=window))  # fmt: skip
    if item.get("flatdemandstructure"):
        rates, period_bounds, _, _ = _tiers(item["flatdemandstructure"], "URDB flatdemandstructure", units)
        bounds = _shared(period_bounds, "URDB flatdemandstructure")
        months = _list(item.get("flatdemandmonths") or [0] * 12, "URDB flatdemandmonths")
        if len(months) != 12 or any(not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < len(rates)
                                    for v in months):  # fmt: skip
            raise RatingError("URDB flatdemandmonths: expected 12 period indices")
        single = len(set(months)) == 1
        flat_tou = None if single else TouSpec(periods=list(rates), weekday=[[v] * 24 for v in months])
        flat_rates = {"all": rates[f"p{months[0]}"]} if single else rates
        uniform = by_month is not None and len(set(by_month)) == 1
        out.append(DemandSpec(code="demand", description="Demand charge", rates=flat_rates, tier_limits_kw=bounds,
                              tou=flat_tou, interval_min=window, ratchet_months=look,
                              ratchet_pct=by_month[0] if by_month and uniform else None,
                              ratchet_pct_by_month=by_month if by_month and not uniform else None))  # fmt: skip
    elif by_month is not None:
        raise RatingError("URDB demand ratchet without flatdemandstructure: a ratchet needs a monthly peak charge")
    return out


def _date(value: Any) -> date | None:
    if value is None or value == "":
        return None
    ts = _int(value, "URDB startdate/enddate (epoch seconds)")
    if not -62_135_596_800 <= ts <= 253_402_300_799:  # 0001-01-01 .. 9999-12-31
        raise RatingError(f"URDB startdate/enddate {ts}: outside the years 1 to 9999")
    return datetime.fromtimestamp(ts, UTC).date()


# fields that carry a charge amiflow does not model: refused rather than silently dropped (a bill would be wrong)
_UNSUPPORTED = ("coincidentratestructure", "annualmincharge", "fixedchargeeaaddl")


def _item(item: dict[str, Any]) -> TariffSpec:
    for key in _UNSUPPORTED:
        if item.get(key):
            raise RatingError(f"field {key} carries a charge amiflow does not model; refusing rather than misbilling")
    if not item.get("energyratestructure"):
        raise RatingError("URDB item has no energyratestructure (demand-only rates are not supported)")
    rates, bounds, basis, sell = _tiers(
        item["energyratestructure"], "URDB energyratestructure", {"kWh": "month", "kWh daily": "day", "kWh/day": "day"}
    )
    # one set of bounds (periods without tiers take it, as before): tiers count the month's total, as SAM does;
    # periods with different bounds: each period's own (rating.tiers)
    distinct = {tuple(b) for b in bounds.values() if b}
    if len(distinct) <= 1:
        energy = EnergySpec(rates=rates, tier_limits_kwh=list(distinct.pop()) if distinct else [], tier_basis=basis)
    else:
        energy = EnergySpec(rates=rates, tier_limits_kwh_by_period=bounds, tier_basis=basis)
    n = len(rates)
    tou = TouSpec(
        periods=list(rates),
        weekday=_matrix(item, "energyweekdayschedule", n),
        weekend=_matrix(item, "energyweekendschedule", n),
    )
    fixed = []
    if item.get("fixedchargefirstmeter"):
        per = _per(item.get("fixedchargeunits", "$/month"), "fixedchargeunits")
        fixed.append(FixedSpec(code="fixed", description="Fixed charge", amount=_dec(item["fixedchargefirstmeter"],
                               "fixedchargefirstmeter"), per=per))  # fmt: skip
    minimum = None
    if item.get("mincharge"):
        per = _per(item.get("minchargeunits", "$/month"), "minchargeunits")
        minimum = MinimumSpec(amount=_dec(item["mincharge"], "mincharge"), per=per)
    if item.get("usenetmetering"):
        export = ExportSpec(mode="net_metering")
    elif sell:
        export = ExportSpec(mode="credit", rates=sell, rate=Decimal(0))
    else:
        export = ExportSpec()
    label = str(item.get("label") or item.get("name") or "urdb")
    name = " ".join(str(x) for x in (item.get("utility"), item.get("name")) if x)
    return TariffSpec(
        id=label, version=1, name=name, currency="USD", source="urdb",
        source_ref=item.get("uri") or f"https://apps.openei.org/IURDB/rate/view/{label}",
        effective_from=_date(item.get("startdate")) or date(1970, 1, 1), effective_to=_date(item.get("enddate")),
        tou=tou, energy=energy,
        demand=_demand(item), fixed=fixed, minimum=minimum, export=export,
    )  # fmt: skip


def urdb_to_specs(data: Any, *, where: str = "URDB") -> list[TariffSpec]:
    """Convert a URDB rate item or API response into tariff specs (one per item)."""
    items = data.get("items", [data])
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise RatingError(f"{where}: items[{i}] is not an object")
        try:
            out.append(_item(item))
        except RatingError as exc:
            raise RatingError(f"{where}: item {item.get('label', i)}: {exc}") from None
        except ValidationError as exc:
            detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
            raise RatingError(f"{where}: item {item.get('label', i)}: {detail}") from None
    if not out:
        raise RatingError(f"{where}: no rate items")
    return out
