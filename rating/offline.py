"""Offline rating of one meter's usage file (what ``amiflow rate`` does): the usage CSV, its whole months, the bills.

The usage CSV has the header ``ts,kwh`` (optionally ``export_kwh``): ``ts`` is the interval END in ISO 8601 with an
offset or ``Z``; a negative ``kwh`` is exported energy. Intervals are 15 minutes (or 5/30/60, one step per file).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt

from amiflow.errors import RatingError
from rating.local_time import local_midnight_ts
from rating.tariff import TariffSpec
from rating.tariff_change import rate_parts, split_bill_json, tariff_parts

__all__ = ["Usage", "rate_usage", "read_usage_csv", "whole_months"]


@dataclass(frozen=True, slots=True)
class Usage:
    """One meter's intervals from a usage file: ends (UTC epoch s), import and export Wh (NaN = absent)."""

    ts: npt.NDArray[np.int64]
    import_wh: npt.NDArray[np.float64]
    export_wh: npt.NDArray[np.float64]
    step_s: int


def _ts(text: str, where: str) -> int:
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise RatingError(f"{where}: ts {text!r} is not ISO 8601") from None
    if dt.tzinfo is None:
        raise RatingError(f"{where}: ts {text!r} has no UTC offset (add Z or +hh:mm)")
    return int(dt.timestamp())


def _kwh(text: str, where: str, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise RatingError(f"{where}: {column} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise RatingError(f"{where}: {column} {text!r} is not a finite number")
    return value


def read_usage_csv(path: Path) -> Usage:
    """Parse a usage CSV; RatingError naming the file, line and problem on bad input."""
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise RatingError(f"{path}: cannot read usage file ({exc.strerror})") from None
    with handle:
        reader = csv.reader(handle)
        header = [h.strip().lower() for h in next(reader, [])]
        if header[:2] != ["ts", "kwh"] or not set(header[2:]) <= {"export_kwh"}:
            raise RatingError(f"{path}:1: header must be 'ts,kwh' (optionally ',export_kwh'), got {','.join(header)!r}")
        rows: dict[int, tuple[float, float, int]] = {}
        for row in reader:
            line = reader.line_num
            where = f"{path}:{line}"
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise RatingError(f"{where}: expected {len(header)} fields, got {len(row)}")
            ts = _ts(row[0], where)
            kwh = _kwh(row[1], where, "kwh")
            exp = _kwh(row[2], where, "export_kwh") if len(row) > 2 and row[2].strip() else 0.0
            if exp < 0:
                raise RatingError(f"{where}: export_kwh must not be negative")
            if ts in rows:
                raise RatingError(f"{where}: duplicate interval ending {row[0].strip()} (first on line {rows[ts][2]})")
            rows[ts] = (max(kwh, 0.0) * 1000.0, (exp + max(-kwh, 0.0)) * 1000.0, line)
    if len(rows) < 2:
        raise RatingError(f"{path}: needs at least two intervals")
    ends = np.array(sorted(rows), dtype=np.int64)
    step = int(np.min(np.diff(ends)))
    if 3600 % step:
        raise RatingError(f"{path}: interval length {step} s does not divide an hour")
    off = np.flatnonzero(ends % step)
    if off.size:
        raise RatingError(f"{path}:{rows[int(ends[off[0]])][2]}: interval end not on a {step // 60}-minute boundary")
    full = np.arange(ends[0], ends[-1] + 1, step, dtype=np.int64)
    imp = np.full(len(full), np.nan)
    exp_wh = np.full(len(full), np.nan)
    pos = (ends - ends[0]) // step
    imp[pos] = [rows[int(t)][0] for t in ends]
    exp_wh[pos] = [rows[int(t)][1] for t in ends]
    return Usage(full, imp, exp_wh, step)


def whole_months(usage: Usage, zone: ZoneInfo) -> list[date]:
    """First days of the whole local months the usage covers."""
    first = datetime.fromtimestamp(int(usage.ts[0] - usage.step_s), zone).date()
    last = datetime.fromtimestamp(int(usage.ts[-1]), zone).date()
    out = []
    month = date(first.year, first.month, 1)
    while month <= last:
        nxt = date(month.year + month.month // 12, month.month % 12 + 1, 1)
        if (
            local_midnight_ts(month, zone) >= usage.ts[0] - usage.step_s
            and local_midnight_ts(nxt, zone) <= usage.ts[-1]
        ):
            out.append(month)
        month = nxt
    return out


def rate_usage(
    versions: Sequence[TariffSpec], usage: Usage, tz: str, months: Sequence[date], *, meter: str = "usage"
) -> list[dict[str, Any]]:
    """Bills (CONTRACT.md JSON) of one meter's usage for each whole local month starting at ``months``; a month in
    which the tariff version changes is split at the change (rating.tariff_change)."""
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise RatingError(f"unknown time zone {tz!r}") from None
    bills = []
    for start in months:
        end = date(start.year + start.month // 12, start.month % 12 + 1, 1)
        s_ts, e_ts = local_midnight_ts(start, zone), local_midnight_ts(end, zone)
        sel = (usage.ts > s_ts) & (usage.ts <= e_ts)
        expected = (e_ts - s_ts) // usage.step_s
        if int(sel.sum()) != expected:
            raise RatingError(f"usage does not cover {start:%Y-%m} ({tz}): {int(sel.sum())} of {expected} intervals")
        missing = usage.ts[sel][np.isnan(usage.import_wh[sel])]
        if missing.size:
            first = datetime.fromtimestamp(int(missing[0]), ZoneInfo("UTC")).isoformat().replace("+00:00", "Z")
            raise RatingError(f"usage misses {missing.size} interval(s) in {start:%Y-%m}, first ending {first}")
        ts = usage.ts[sel]
        blocks = rate_parts(
            tariff_parts(versions, start, end), ts, usage.import_wh[sel][None, :], usage.export_wh[sel][None, :],
            tz=tz, period_start=start, period_end=end,
        )  # fmt: skip
        bills.append(split_bill_json(blocks, 0, meter=meter))
    return bills
