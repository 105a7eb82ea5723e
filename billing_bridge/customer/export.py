"""Usage exports: the Green Button feed or CSV of one meter's days, and the demo's ``greenbutton/METER.xml`` files.

CSV columns: ``start_utc,end_utc,local_start,kwh_import,kwh_export,quality`` - one row per interval, ``kwh_*`` empty
where that channel holds no value for the interval, ``quality`` the interval's flag names joined by ``;`` (empty when
clean). A heat meter's file has the same columns (its heat in kWh); a water or gas meter's has ``m3_import,m3_export``
instead (volume in m3). Both formats export the meter's service: electricity, heat, water or gas (the Green Button
feed says which in its ServiceCategory and ReadingTypes).
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import psycopg

from amiflow.errors import ConfigError
from amiflow.types import QualityFlag
from billing_bridge.customer.greenbutton import espi_feed
from billing_bridge.customer.usage import SERVICES, MeterUsage, UsageNotFound, read_usage

__all__ = ["FORMATS", "export_usage", "meter_currency", "usage_csv", "write_greenbutton_files"]

FORMATS = ("espi", "csv")
CSV_HEADER = ("start_utc", "end_utc", "local_start", "kwh_import", "kwh_export", "quality")
CSV_HEADER_VOLUME = ("start_utc", "end_utc", "local_start", "m3_import", "m3_export", "quality")


def meter_currency(conn: psycopg.Connection[Any], meter: str) -> str | None:
    """The currency of the meter's tariff (its latest stored version), None without one."""
    row = conn.execute(
        "SELECT t.body->>'currency' FROM amiflow.meters m JOIN amiflow.tariffs t ON t.id = m.tariff"
        " WHERE m.name = %s ORDER BY t.version DESC LIMIT 1",
        (meter,),
    ).fetchone()
    return str(row[0]) if row and row[0] else None


def _iso(ts: int, zone: ZoneInfo | None = None) -> str:
    dt = datetime.fromtimestamp(ts, zone or UTC)
    return dt.isoformat().replace("+00:00", "Z") if zone is None else dt.isoformat()


def _flags(bits: int) -> str:
    return ";".join(f.name.lower() for f in QualityFlag if f.name and bits & f)


def usage_csv(usage: MeterUsage) -> str:
    """The CSV text of ``usage`` (one row per interval end found in any channel, in time order)."""
    rows: dict[int, dict[str, Any]] = {}
    step = usage.channels[0].interval_s if usage.channels else 900
    per_kilo = usage.service.unit == "Wh"  # energy in kWh; volume stays m3
    for ch in usage.channels:
        step = min(step, ch.interval_s)
        for t, wh, q in zip(ch.ts.tolist(), ch.wh.tolist(), ch.quality.tolist(), strict=True):
            row = rows.setdefault(t, {"bits": 0})
            row[ch.flow] = f"{wh / 1000 if per_kilo else wh:.6f}"
            row["bits"] |= q
    zone = usage.meter.zone
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        CSV_HEADER if per_kilo else ("start_utc", "end_utc", "local_start", "m3_import", "m3_export", "quality")
    )
    for t in sorted(rows):
        row = rows[t]
        writer.writerow(
            (_iso(t - step), _iso(t), _iso(t - step, zone), row.get("import", ""), row.get("export", ""),
             _flags(row["bits"]))
        )  # fmt: skip
    return out.getvalue()


def export_usage(
    conn: psycopg.Connection[Any],
    meter: str,
    start: date,
    end: date,
    fmt: Literal["espi", "csv"] | str = "espi",
    *,
    account: str | None = None,
    base: str = "/espi/1_1/resource",
) -> bytes:
    """The export of ``meter``'s local days [start, end) as bytes; never an empty feed (UsageNotFound instead)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r} (use {' or '.join(FORMATS)})")
    usage = read_usage(conn, meter, start, end, account=account, services=SERVICES)
    if fmt == "csv":
        return usage_csv(usage).encode()
    return espi_feed(usage, currency=meter_currency(conn, meter), base=base)


def write_greenbutton_files(conn: psycopg.Connection[Any], out_dir: Path, period_start: date, period_end: date) -> int:
    """Write ``out_dir/greenbutton/METER.xml`` for every meter billed for the period; returns the number written."""
    meters = [
        str(r[0])
        for r in conn.execute(
            "SELECT DISTINCT meter FROM amiflow.v_bills WHERE status = 'issued' AND period_start = %s ORDER BY 1",
            (period_start,),
        ).fetchall()
    ]
    folder = out_dir / "greenbutton"
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    for meter in meters:
        try:
            data = export_usage(conn, meter, period_start, period_end)
        except UsageNotFound:
            continue  # billed on estimates alone: nothing stored to export
        (folder / f"{meter}.xml").write_bytes(data)
        written += 1
    return written
