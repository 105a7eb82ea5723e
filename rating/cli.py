"""``amiflow rate`` (offline rating of one usage CSV) and ``amiflow tariffs import|list|show``.

The usage CSV has the header ``ts,kwh`` (optionally ``export_kwh``): ``ts`` is the interval END in ISO 8601 with an
offset or ``Z``; a negative ``kwh`` is exported energy. Intervals are 15 minutes (or 5/30/60, one step per file).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt

from amiflow.errors import ConfigError, RatingError
from amiflow.settings import Settings
from amiflow_app.command import Command
from rating.bill import bill_json
from rating.compile import compile_tariff
from rating.engine import build_axis, local_midnight_ts, rate_block
from rating.tariff import TariffSpec, load_tariff, select_version

__all__ = [
    "RATE",
    "TARIFFS_IMPORT",
    "TARIFFS_LIST",
    "TARIFFS_SHOW",
    "Usage",
    "rate_usage",
    "read_usage_csv",
    "store_tariff",
    "tariff_versions",
]


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


def _months(usage: Usage, zone: ZoneInfo) -> list[date]:
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
    """Bills (CONTRACT.md JSON) of one meter's usage for each whole local month starting at ``months``."""
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
        tariff = compile_tariff(select_version(versions, start, end))
        ts = usage.ts[sel]
        axis = build_axis(tariff, ts, tz)
        block = rate_block(
            tariff, ts, usage.import_wh[sel][None, :], usage.export_wh[sel][None, :],
            tz=tz, period_start=start, period_end=end, axis=axis,
        )  # fmt: skip
        bills.append(bill_json(block, 0, meter=meter))
    return bills


def _rate_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tariff", type=Path, required=True, help="tariff file: amiflow JSON/TOML or URDB JSON")
    parser.add_argument("--usage", type=Path, required=True, help="CSV with header ts,kwh (ts = interval END)")
    parser.add_argument("--tz", default="UTC", help="IANA time zone the tariff is evaluated in (default UTC)")
    parser.add_argument("--period", help="bill one month YYYY-MM (default: every whole month in the file)")
    parser.add_argument("--meter", default="usage", help="meter name to print on the bill")


def _rate(args: argparse.Namespace, settings: Settings) -> int:
    del settings
    versions = load_tariff(args.tariff)
    usage = read_usage_csv(args.usage)
    try:
        zone = ZoneInfo(args.tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"--tz {args.tz!r}: unknown IANA time zone") from None
    if args.period:
        try:
            month = datetime.strptime(args.period, "%Y-%m").date()
        except ValueError:
            raise ConfigError(f"--period {args.period!r}: expected YYYY-MM") from None
        bills = rate_usage(versions, usage, args.tz, [month], meter=args.meter)
        print(json.dumps(bills[0], indent=2))
        return 0
    months = _months(usage, zone)
    if not months:
        raise RatingError(f"{args.usage}: holds no whole month in {args.tz}; use --period or give a whole month")
    print(json.dumps(rate_usage(versions, usage, args.tz, months, meter=args.meter), indent=2))
    return 0


# -- the tariffs table -----------------------------------------------------------------------------------------------


def store_tariff(conn: Any, spec: TariffSpec) -> str:
    """Insert one version into amiflow.tariffs: 'imported', 'unchanged', or RatingError if the version differs."""
    body = spec.model_dump(mode="json")
    with conn.transaction():
        row = conn.execute(
            "SELECT body FROM amiflow.tariffs WHERE id = %s AND version = %s FOR UPDATE", (spec.id, spec.version)
        ).fetchone()
        if row is not None:
            if TariffSpec.model_validate(row[0]) == spec:
                return "unchanged"
            raise RatingError(
                f"tariff {spec.id} version {spec.version} already exists with different content; "
                "versions are immutable: give the change a new version number"
            )
        from psycopg.types.json import Jsonb

        conn.execute(
            "INSERT INTO amiflow.tariffs (id, version, name, effective_from, effective_to, source, source_ref, body)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (spec.id, spec.version, spec.name, spec.effective_from, spec.effective_to, spec.source, spec.source_ref,
             Jsonb(body)),
        )  # fmt: skip
    return "imported"


def tariff_versions(conn: Any, tariff_id: str) -> list[TariffSpec]:
    """All stored versions of ``tariff_id`` (use rating.tariff.select_version to pick one for a period)."""
    rows = conn.execute("SELECT body FROM amiflow.tariffs WHERE id = %s ORDER BY version", (tariff_id,)).fetchall()
    return [TariffSpec.model_validate(r[0]) for r in rows]


def _open(settings: Settings) -> Any:
    from amiflow.db import open_database

    return open_database(settings)


def _import_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="amiflow JSON/TOML tariff, URDB rate item or URDB API response")


def _import(args: argparse.Namespace, settings: Settings) -> int:
    specs = load_tariff(args.file)
    for spec in specs:
        compile_tariff(spec)  # refuse what cannot rate, before storing it
    with _open(settings) as db, db.connect() as conn:
        for spec in specs:
            result = store_tariff(conn, spec)
            print(f"tariff {spec.id} version {spec.version} ({spec.source}, from {spec.effective_from}): {result}")
    return 0


def _list_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON lines")


def _list(args: argparse.Namespace, settings: Settings) -> int:
    with _open(settings) as db, db.connect() as conn:
        rows = conn.execute(
            "SELECT id, version, effective_from, effective_to, source, name FROM amiflow.tariffs ORDER BY id, version"
        ).fetchall()
    if args.json:
        keys = ("id", "version", "effective_from", "effective_to", "source", "name")
        for r in rows:
            print(json.dumps(dict(zip(keys, r, strict=True)), default=str))
        return 0
    print(f"{'tariff':<28} {'version':>7} {'from':<10} {'to':<10} {'source':<7} name")
    for tid, ver, frm, to, src, name in rows:
        print(f"{tid:<28} {ver:>7} {frm!s:<10} {(str(to) if to else '-'):<10} {src:<7} {name}")
    print(f"{len(rows)} tariff version(s)")
    return 0


def _show_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tariff", help="tariff id")
    parser.add_argument("--version", type=int, help="version (default: the latest)")


def _show(args: argparse.Namespace, settings: Settings) -> int:
    with _open(settings) as db, db.connect() as conn:
        versions = tariff_versions(conn, args.tariff)
    if args.version is not None:
        versions = [v for v in versions if v.version == args.version]
    if not versions:
        what = f"{args.tariff} version {args.version}" if args.version else args.tariff
        raise ConfigError(f"tariff {what}: not found (see `amiflow tariffs list`)")
    print(json.dumps(versions[-1].model_dump(mode="json"), indent=2))
    return 0


RATE = Command("rate a usage CSV offline with a tariff file; prints bill JSON", _rate_args, _rate)
TARIFFS_IMPORT = Command("import tariffs (amiflow JSON/TOML or OpenEI URDB JSON)", _import_args, _import)
TARIFFS_LIST = Command("list stored tariff versions", _list_args, _list)
TARIFFS_SHOW = Command("show one stored tariff version as JSON", _show_args, _show)
