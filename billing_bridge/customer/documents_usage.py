"""The metering facts of a bill document: the daily usage split by the tariff's TOU periods, and register reads.

Daily usage: every interval of the bill's days (the store's values with VEE's estimates overlaid, as the bill used
them, :func:`billing_bridge.customer.usage.load_channels`) is placed in the local day and hour of its START and in
the TOU period the tariff's schedule gives that day type (weekday, weekend, the tariff's holidays), month and hour -
the lookup the rating engine makes (rating/time_axis.py). :func:`daily_tou` is pure numpy, no loop per interval.

Register reads: the import (``1-0:1.8.0``) and export (``1-0:2.8.0``) register values stored nearest to the
period's start and end (within 36 hours), so the document shows the reads a customer can compare with the display.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

from amiflow.types import QualityFlag
from billing_bridge.customer.documents_model import DailyUsage, RegisterRead
from rating.compile import CompiledTariff
from rating.local_time import local_start_s

__all__ = ["REGISTERS", "daily_tou", "read_registers"]

#: register OBIS codes a bill shows, with their labels
REGISTERS = {"1-0:1.8.0": "Import register (1.8.0)", "1-0:2.8.0": "Export register (2.8.0)"}
_NEAR = timedelta(hours=36)
_EPOCH = date(1970, 1, 1)
_MILLI = Decimal("0.001")
_Classified = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_]]
_CLASSIFIED: dict[tuple[object, ...], _Classified] = {}


def _kwh_rows(wh: npt.NDArray[np.float64]) -> list[tuple[Decimal, ...]]:
    """Wh -> kWh with three decimals (rounded to the Wh, half to even), row by row."""
    milli = np.rint(np.atleast_2d(wh)).astype(np.int64).tolist()
    return [tuple(Decimal(v).scaleb(-3) for v in row) for row in milli]


def daily_tou(
    tariff: CompiledTariff,
    tz: str,
    start: date,
    end: date,
    import_ts: npt.ArrayLike,
    import_wh: npt.ArrayLike,
    interval_s: int,
    *,
    quality: npt.ArrayLike | None = None,
    export_ts: npt.ArrayLike | None = None,
    export_wh: npt.ArrayLike | None = None,
) -> DailyUsage:
    """kWh per local day of [start, end) and TOU period of ``tariff``; intervals outside the days are ignored.

    ``import_ts`` are interval ends (UTC epoch s) of ``interval_s`` each; ``quality`` QualityFlag bits counts the
    estimated intervals. Days without any interval are zero.
    """
    n_days = (end - start).days
    periods = tariff.periods
    first = (start - _EPOCH).days
    grid = np.zeros((n_days, len(periods)), dtype=np.float64)
    ts = np.asarray(import_ts, dtype=np.int64)
    wh = np.asarray(import_wh, dtype=np.float64)
    estimated = 0
    if len(ts):
        day, period, keep = _classify(tariff, tz, ts, interval_s, first, n_days)
        np.add.at(grid, (day[keep], period[keep]), wh[keep])
        if quality is not None:
            bits = np.asarray(quality, dtype=np.int64)[keep]
            estimated = int(np.count_nonzero(bits & int(QualityFlag.ESTIMATED)))
    exported = np.zeros(n_days, dtype=np.float64)
    if export_ts is not None and export_wh is not None and len(np.asarray(export_ts)):
        ets = np.asarray(export_ts, dtype=np.int64)
        local = local_start_s(ets, interval_s, tz)
        eday = local // 86400 - first
        keep = (eday >= 0) & (eday < n_days)
        np.add.at(exported, eday[keep], np.asarray(export_wh, dtype=np.float64)[keep])
    days = tuple(start + timedelta(days=i) for i in range(n_days))
    return DailyUsage(periods, days, tuple(_kwh_rows(grid)), _kwh_rows(exported)[0] if n_days else (), estimated)


def _classify(
    tariff: CompiledTariff, tz: str, ts: npt.NDArray[np.int64], interval_s: int, first: int, n_days: int
) -> _Classified:
    """(day index from ``first``, TOU period index, in-range mask) of each interval."""
    uniform = len(ts) > 1 and int(ts[-1] - ts[0]) == (len(ts) - 1) * interval_s
    key = (tariff.spec.id, tariff.spec.version, tz, interval_s, int(ts[0]), len(ts), first, n_days)
    if uniform and key in _CLASSIFIED:  # a month of meters on one tariff share their time axis
        return _CLASSIFIED[key]
    local = local_start_s(ts, interval_s, tz)
    day_no = local // 86400
    month = day_no.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) % 12
    hour = (local % 86400) // 3600
    day_type = (((day_no + 3) % 7) >= 5).astype(np.int64)  # 1970-01-01 was a Thursday; Monday = 0
    years = np.unique(day_no.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970)
    day_type[np.isin(day_no, tariff.holiday_days(int(y) for y in years))] = 2
    period = tariff.schedule[day_type, month, hour].astype(np.int64)
    day = day_no - first
    out = day, period, (day >= 0) & (day < n_days)
    if uniform:
        if len(_CLASSIFIED) >= 16:
            _CLASSIFIED.clear()
        _CLASSIFIED[key] = out
    return out


def read_registers(
    conn: psycopg.Connection[Any], meter: str, start_utc: datetime, end_utc: datetime, obis: Sequence[str] = ()
) -> tuple[RegisterRead, ...]:
    """The register reads nearest ``start_utc`` and ``end_utc`` (each within 36 h) of ``meter``; registers with no
    read near either end are left out."""
    codes = list(obis or REGISTERS)
    rows = conn.execute(
        "SELECT obis, ts, value, unit FROM amiflow.v_readings WHERE meter = %s AND obis = ANY(%s)"
        " AND ts >= %s AND ts <= %s ORDER BY obis, ts",
        (meter, codes, start_utc - _NEAR, end_utc + _NEAR),
    ).fetchall()
    out = []
    for code in codes:
        reads = [(ts, _register_kwh(value, unit)) for o, ts, value, unit in rows if o == code]
        if not reads:
            continue
        s = min(reads, key=lambda r: abs((r[0] - start_utc).total_seconds()))
        e = min(reads, key=lambda r: abs((r[0] - end_utc).total_seconds()))
        s_ok, e_ok = abs(s[0] - start_utc) <= _NEAR, abs(e[0] - end_utc) <= _NEAR
        if s is e:  # one read only: it belongs to the nearer end
            s_ok, e_ok = (
                s_ok and abs(s[0] - start_utc) <= abs(e[0] - end_utc),
                e_ok and abs(e[0] - end_utc) < abs(s[0] - start_utc),
            )
        out.append(
            RegisterRead(
                code, REGISTERS.get(code, code),
                s[0].astimezone(UTC) if s_ok else None, s[1] if s_ok else None,
                e[0].astimezone(UTC) if e_ok else None, e[1] if e_ok else None,
            )
        )  # fmt: skip
    return tuple(out)


def _register_kwh(value: float, unit: str) -> Decimal:
    scale = {"Wh": Decimal(1000), "kWh": Decimal(1), "MWh": Decimal("0.001")}.get(unit, Decimal(1000))
    return (Decimal(repr(float(value))) / scale).quantize(_MILLI)
