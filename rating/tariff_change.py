"""A tariff change inside a bill period: the period is split at the change, each part rated with its own version.

Which version rates a day: of the versions effective that day, the one with the latest ``effective_from`` (then the
highest ``version``), the rule of :func:`rating.tariff.select_version` applied day by day. Consecutive days of one
version form a part. A period with one part is rated and billed exactly as before (:func:`rating.rate_block`,
:func:`rating.bill_json`).

Each part is rated by :func:`rating.engine.rate_part` over the meters' active days inside it: its intervals' energy
at its rates, monthly tier bounds, fixed and minimum charges prorated by part days / period days, demand on the
part's own peak prorated by part days / active days. The bill of a split period (:func:`split_bill_json`) keeps
the CONTRACT.md shape and adds keys only:

* ``lines``: the lines of every part in order, each with ``"part": k`` and the part in its description
  (``"Energy (peak) [2024-04-15..2024-04-30, res-tou v2]"``);
* ``parts``: [{``start``, ``end`` (inclusive), ``tariff`` {``id``, ``version``}, ``days``, ``total``,
  ``determinants``}];
* ``determinants``: the sums over the parts (kWh, days, counts), the highest peak for ``peak_kw`` / ``billed_kw``;
* ``tariff``: the version in effect at the end of the period; ``total``: the sum of the parts' totals.

A meter whose active days fall in one part only gets that part's plain bill (no ``parts`` key).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Literal

import numpy.typing as npt

from amiflow.errors import RatingError
from rating.bill import bill_json, default_bill_id
from rating.compile import CompiledTariff, compile_tariff
from rating.engine import RatedBlock, rate_part
from rating.money import format_minor
from rating.tariff import TariffSpec
from rating.time_axis import TimeAxis, build_axis

__all__ = ["TariffPart", "rate_parts", "split_bill_json", "tariff_parts"]

_MAX_NAMES = frozenset({"peak_kw", "billed_kw"})
_MILLI = Decimal("0.001")


@dataclass(frozen=True, slots=True)
class TariffPart:
    """The days [start, end) of a bill period rated with one compiled tariff version."""

    tariff: CompiledTariff
    start: date
    end: date


def _in_effect(versions: Sequence[TariffSpec], day: date) -> TariffSpec | None:
    live = [v for v in versions if v.covers(day, day + timedelta(days=1))]
    return max(live, key=lambda v: (v.effective_from, v.version)) if live else None


def tariff_parts(versions: Sequence[TariffSpec], start: date, end: date) -> list[TariffPart]:
    """Split [start, end) where the version in effect changes; RatingError naming the first day without one."""
    if end <= start:
        raise RatingError(f"empty bill period {start}..{end}")
    runs: list[tuple[TariffSpec, date, date]] = []
    day = start
    while day < end:
        spec = _in_effect(versions, day)
        if spec is None:
            ids = ", ".join(sorted({v.id for v in versions})) or "(none)"
            raise RatingError(f"no version of tariff {ids} is effective on {day} (bill period {start}..{end})")
        if runs and runs[-1][0] is spec:
            runs[-1] = (spec, runs[-1][1], day + timedelta(days=1))
        else:
            runs.append((spec, day, day + timedelta(days=1)))
        day += timedelta(days=1)
    return [TariffPart(compile_tariff(spec), a, b) for spec, a, b in runs]


def rate_parts(
    parts: Sequence[TariffPart],
    ts: npt.ArrayLike,
    import_wh: npt.ArrayLike,
    export_wh: npt.ArrayLike | None = None,
    *,
    tz: str,
    period_start: date,
    period_end: date,
    active_from: npt.ArrayLike | None = None,
    active_to: npt.ArrayLike | None = None,
    prior_peak_w: Mapping[str, npt.ArrayLike] | None = None,
    nan: Literal["reject", "zero"] = "reject",
    axis: TimeAxis | None = None,
) -> list[RatedBlock]:
    """One RatedBlock per part (rows aligned with the meters); ``axis`` is reused for a single part only."""
    if not parts:
        raise RatingError(f"no tariff for the bill period {period_start}..{period_end}")
    whole = len(parts) == 1 and (parts[0].start, parts[0].end) == (period_start, period_end)
    return [
        rate_part(
            p.tariff,
            ts,
            import_wh,
            export_wh,
            tz=tz,
            period_start=period_start,
            period_end=period_end,
            part_start=p.start,
            part_end=p.end,
            active_from=active_from,
            active_to=active_to,
            prior_peak_w=prior_peak_w,
            nan=nan,
            axis=axis if whole and axis is not None else build_axis(p.tariff, ts, tz),
        )
        for p in parts
    ]


def _merge(trees: Sequence[dict[str, Any]], take_max: bool = False) -> dict[str, Any]:
    """Determinant trees of the parts as one: sums (ints and decimal strings), or the highest for peaks."""
    out: dict[str, Any] = {}
    for tree in trees:
        for key, value in tree.items():
            if isinstance(value, dict):
                out[key] = _merge([out.get(key, {}), value], take_max or key in _MAX_NAMES)
            elif key not in out:
                out[key] = value
            elif isinstance(value, int):
                out[key] = max(out[key], value) if take_max else out[key] + value
            else:
                x, y = Decimal(out[key]), Decimal(value)
                out[key] = str((max(x, y) if take_max else x + y).quantize(_MILLI))
    return out


def split_bill_json(blocks: Sequence[RatedBlock], i: int, *, meter: str, **extra: Any) -> dict[str, Any]:
    """The bill of row ``i`` over the parts ``blocks`` (from :func:`rate_parts`); ``extra`` as for bill_json."""
    used = [b for b in blocks if int(b.days[i]) > 0] or [blocks[-1]]
    if len(used) == 1:
        return bill_json(used[0], i, meter=meter, **extra)
    currencies = {b.tariff.spec.currency for b in used}
    if len(currencies) != 1:
        raise RatingError(f"tariff versions of one bill period bill in different currencies {sorted(currencies)}")
    bills = [bill_json(b, i, meter=meter, **extra) for b in used]
    first, last = bills[0], bills[-1]
    out = dict(last)
    out["period"] = {**last["period"], "start": first["period"]["start"], "start_utc": first["period"]["start_utc"]}
    if extra.get("bill_id") is None:
        key = extra.get("account") or meter
        out["bill_id"] = default_bill_id(
            key, date.fromisoformat(first["period"]["start"]), date.fromisoformat(last["period"]["end"])
        )
    out["lines"] = []
    for k, bill in enumerate(bills):
        period, tariff = bill["period"], bill["tariff"]
        label = f" [{period['start']}..{period['end']}, {tariff['id']} v{tariff['version']}]"
        out["lines"] += [{**line, "description": line["description"] + label, "part": k} for line in bill["lines"]]
    out["determinants"] = _merge([b["determinants"] for b in bills])
    minor = used[-1].tariff.minor_units
    out["total"] = format_minor(sum(int(b.total_minor[i]) for b in used), minor)
    out["parts"] = [
        {"start": b["period"]["start"], "end": b["period"]["end"], "tariff": b["tariff"],
         "days": b["determinants"]["days"], "total": b["total"], "determinants": b["determinants"]}
        for b in bills
    ]  # fmt: skip
    return out
