"""The HTML report from a real database: its numbers, and that it renders in headless Chromium (with a screenshot)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from amiflow.db.quarantine import quarantine
from amiflow.db.writer import BatchWriter
from amiflow.types import QualityFlag, ReadingBatch
from amiflow_app.report import build_report, collect

T0 = 1_793_491_200  # 2026-11-01T00:00:00Z


@pytest.fixture
def filled(db_conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    for name in ("R1", "R2"):
        db_conn.execute("INSERT INTO amiflow.meters (name, protocol) VALUES (%s, 'mqtt')", (name,))
    ts = T0 + 900 * np.arange(1, 96 * 3 + 1)
    values = 200 + 150 * np.sin(np.arange(len(ts)) / 96 * 2 * np.pi)
    quality = np.where(np.arange(len(ts)) % 50 == 0, int(QualityFlag.ESTIMATED), 0)
    writer = BatchWriter(db_conn)
    writer.write(ReadingBatch.from_columns("R1", "1-0:1.29.0", ts, values, unit="Wh", quality=quality))
    writer.write(ReadingBatch.from_columns("R2", "1-0:1.29.0", ts[:100], values[:100], unit="Wh"))
    quarantine(db_conn, source="mqtt", reason="meter_mismatch", raw=b"{}", meter="R2")
    return db_conn


def test_report_numbers(filled: psycopg.Connection[Any]) -> None:
    data = collect(filled, "2026-11")
    assert data.meter == "R1"  # the meter with the most flagged intervals
    assert len(data.curve) == 288 and any("estimated" in q for _, _, q in data.curve)
    assert dict((m, p) for m, p, _ in data.gaps) == {"R1": 288, "R2": 100}
    assert data.quarantine == [("meter_mismatch", 1)]
    assert data.protocols == [("mqtt", 2, None, None)]  # push meters: polls do not apply


def test_report_follows_an_account(filled: psycopg.Connection[Any], tmp_path: Path) -> None:
    conn = filled
    conn.execute(
        "INSERT INTO amiflow.bills (bill_id, version, account, meter, period_start, period_end, tariff_id,"
        " tariff_version, total, currency, estimated_share, content_hash, body) VALUES ('B-1', 1, 'ACC-9', 'R2',"
        " '2026-11-01', '2026-11-30', 'T', 1, 1234.5, 'EUR', 0.02, 'h', %s)",
        (json.dumps(BILL),),
    )
    data = collect(conn, "2026-11", account="ACC-9")
    assert data.meter == "R2" and data.story is not None and data.story.meter == "R2"
    assert data.figures["bills_issued"] == 1 and data.figures["bills_total"] == {"EUR": "1234.50"}
    assert [what for _, what in data.story.events] == ["bill B-1 issued: 1,234.50 EUR"]
    page = build_report(conn, "2026-11", tmp_path, account="ACC-9").read_text(encoding="utf-8")
    assert "Account ACC-9 (meter R2)" in page and "1,234.50 EUR" in page
    assert "Bill B-1 of ACC-9 (meter R2)" in page and "energy / peak / tier1" in page  # determinants as a table


BILL = {
    "bill_id": "B-1", "account": "ACC-9", "currency": "EUR", "total": "1234.50",
    "estimated_share": 0.02, "determinants": {"energy": {"peak": {"tier1": 12.5}}, "days": 30},
    "meters": ["R2"],
    "lines": [{"code": "energy", "description": "Energy", "quantity": "12.5", "unit": "kWh", "rate": "0.2",
               "amount": "2.50"}],
}  # fmt: skip


def test_report_renders_in_headless_chromium(filled: psycopg.Connection[Any], tmp_path: Path) -> None:
    path = build_report(filled, "2026-11", tmp_path)
    assert (tmp_path / "load_curve.png").stat().st_size > 1000
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (make test installs it from Debian's packages)")
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
    ]
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    body = re.search(r"<body([^>]*)>", dom)
    assert body is not None
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body.group(1)))
    assert int(attrs["images"]) >= 2 and attrs["broken-images"] == "0" and attrs["errors"] == "0", attrs
    shot = tmp_path / "report.png"
    subprocess.run(
        [chromium, *flags, "--window-size=1200,2400", f"--screenshot={shot}", path.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 10_000
