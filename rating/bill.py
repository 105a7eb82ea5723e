"""The bill JSON of CONTRACT.md, built from engine output (rating.engine.RatedBlock).

Keys: ``bill_id``, ``version``, ``account``, ``meters``, ``period`` {``start``, ``end`` (local dates, ``end``
INCLUSIVE: the last billed day), ``start_utc``, ``end_utc`` (instants, end exclusive)}, ``tariff`` {``id``,
``version``}, ``determinants``, ``lines`` [{``code``, ``description``, ``quantity``, ``unit``, ``rate``, ``amount``}],
``total``, ``currency``, ``estimated_share``, ``vee``. Money and quantities are decimal strings, never floats. A
tariff in another unit than kWh (MWh of heat, m3 of water) adds ``tariff.unit``: its lines and the energy
determinants (``import_kwh``, ``energy_kwh``: names kept) are in that unit.
Energy, demand, export and minimum lines with zero quantity and zero amount are left out; fixed and tax lines stay.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from rating.engine import RatedBlock
from rating.local_time import local_midnight_ts
from rating.money import format_minor, format_scaled

__all__ = ["bill_json", "bills_json", "default_bill_id"]

_EPOCH = date(1970, 1, 1)
_OMIT_IF_ZERO = frozenset({"energy", "demand", "export", "minimum"})


def default_bill_id(key: str, start: date, end_inclusive: date) -> str:
    """A stable bill id: ``<account or meter>:<first day>:<last day>`` (a re-rate keeps it and bumps ``version``)."""
    return f"{key}:{start.isoformat()}:{end_inclusive.isoformat()}"


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _determinants(block: RatedBlock, i: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, values in block.determinants.items():
        v = int(values[i])
        value: Any = v // 1000 if name == "days" else v if name == "missing_intervals" else format_scaled(v, 3)
        node = out
        *parents, leaf = name.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def _quantity(block: RatedBlock, unit: str, q: int) -> str:
    minor = block.tariff.minor_units
    if unit == "day":
        return str(q // 1000) if q % 1000 == 0 else format_scaled(q, 3)
    if unit == block.tariff.spec.currency:
        return format_minor(q // 10 ** (3 - minor), minor)
    return format_scaled(q, 3)


def bill_json(
    block: RatedBlock,
    i: int,
    *,
    meter: str,
    account: str | None = None,
    bill_id: str | None = None,
    version: int = 1,
    estimated_share: float = 0.0,
    vee: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The bill of row ``i`` of ``block``."""
    t = block.tariff
    zone = ZoneInfo(block.tz)
    start = _EPOCH + timedelta(days=int(block.active_start_day[i]))
    end = _EPOCH + timedelta(days=int(block.active_end_day[i]))
    last = end - timedelta(days=1) if end > start else start
    lines = []
    for col, spec in enumerate(block.lines):
        q, amount = int(block.quantity_milli[i, col]), int(block.amount_minor[i, col])
        if spec.category in _OMIT_IF_ZERO and amount == 0 and (q == 0 or spec.category == "minimum"):
            continue
        lines.append(
            {
                "code": spec.code,
                "description": spec.description,
                "quantity": _quantity(block, spec.unit, q),
                "unit": spec.unit,
                "rate": None if spec.rate is None else str(spec.rate),
                "amount": format_minor(amount, t.minor_units),
            }
        )
    return {
        "bill_id": bill_id or default_bill_id(account or meter, start, last),
        "version": version,
        "account": account,
        "meters": [meter],
        "period": {
            "start": start.isoformat(),
            "end": last.isoformat(),
            "start_utc": _iso(local_midnight_ts(start, zone)),
            "end_utc": _iso(local_midnight_ts(end, zone)),
        },
        "tariff": {"id": t.spec.id, "version": t.spec.version, **({"unit": t.unit} if t.unit != "kWh" else {})},
        "determinants": _determinants(block, i),
        "lines": lines,
        "total": format_minor(int(block.total_minor[i]), t.minor_units),
        "currency": t.spec.currency,
        "estimated_share": round(float(estimated_share), 6),
        "vee": dict(vee or {}),
    }


def bills_json(
    block: RatedBlock,
    meters: Sequence[str],
    *,
    accounts: Sequence[str | None] | None = None,
    versions: Sequence[int] | None = None,
    estimated_share: Sequence[float] | None = None,
    vee: Sequence[Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Bills of every row of ``block`` (``meters`` in row order); per-meter extras are optional sequences."""
    return [
        bill_json(
            block,
            i,
            meter=meter,
            account=accounts[i] if accounts else None,
            version=versions[i] if versions else 1,
            estimated_share=estimated_share[i] if estimated_share is not None else 0.0,
            vee=vee[i] if vee else None,
        )
        for i, meter in enumerate(meters)
    ]
