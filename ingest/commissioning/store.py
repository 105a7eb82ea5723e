"""Keeping a commissioning: the report in ``amiflow.commissioning_reports``, and a meter that passed in the registry.

``amiflow commission`` (amiflow_app.commands.ingest) also writes the report as JSON under
AMIFLOW_DATA_DIR/commissioning/ and, with ``--format``/``--out``, as a table, HTML or PDF sheet.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from amiflow.db.registry import MeterRecord, add_meter, get_meter, update_meter
from amiflow.uri import parse_meter_uri
from ingest.commissioning.report import CommissioningReport

__all__ = ["register_meter", "store_report"]


def store_report(conn: psycopg.Connection[Any], report: CommissioningReport, *, meter: str | None) -> None:
    """Keep ``report`` in ``amiflow.commissioning_reports`` (``meter``: the id it was commissioned as, if any)."""
    conn.execute(
        "INSERT INTO amiflow.commissioning_reports (uri, meter, passed, report) VALUES (%s, %s, %s, %s)",
        (report.uri, meter, report.passed, Jsonb(report.to_json())),
    )


def register_meter(
    conn: psycopg.Connection[Any],
    report: CommissioningReport,
    meter: str,
    *,
    timezone: str = "UTC",
    tariff: str | None = None,
    account: str | None = None,
    ct_ratio: float = 1.0,
) -> None:
    """Add the commissioned meter to the registry as ``meter``, or update it there (identity and report)."""
    ident = report.identity
    uri = parse_meter_uri(report.uri)
    fields: dict[str, Any] = {
        "serial": ident.get("serial"),
        "manufacturer": ident.get("manufacturer"),
        "model": ident.get("model"),
        "firmware": ident.get("firmware"),
        "commissioning": report.to_json(),
    }
    if get_meter(conn, meter) is None:
        add_meter(
            conn,
            MeterRecord(
                name=meter,
                protocol=uri.protocol,
                uri=report.uri,
                timezone=timezone,
                tariff=tariff,
                account=account,
                ct_ratio=ct_ratio,
                **{k: v for k, v in fields.items() if v is not None},
            ),
        )
    else:
        update_meter(conn, meter, uri=report.uri, tariff=tariff, **fields)
