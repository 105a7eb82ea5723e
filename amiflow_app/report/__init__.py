"""``amiflow report --period YYYY-MM``: a self-contained HTML report with PNG plots, from any amiflow database.

Sections: the period in brief, fleet health (read success per protocol, gaps, quarantine by reason), the load curve
of one meter with its VEE flags, one account's story (its bill, notices, policy decisions, relay commands and
payments), that bill with its lines and determinants, and arrears and collection KPIs. Every figure is also written
as a PNG beside the HTML, which embeds them (base64) so the one file can be mailed or archived; the figures' numbers
are embedded as JSON (``<script id="figures">``) under the names the demo's summary.json uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from amiflow_app.report.document import render_html
from amiflow_app.report.figures import figures
from amiflow_app.report.gather import collect
from amiflow_app.report.model import AccountStory, ReportData, money, period_bounds

__all__ = ["AccountStory", "ReportData", "build_report", "collect", "money", "period_bounds", "render_html"]


def build_report(
    conn: psycopg.Connection[Any], period: str, out_dir: Path, *, meter: str | None = None, account: str | None = None
) -> Path:
    """Write report.html and the PNG figures into ``out_dir``; returns the HTML path."""
    data = collect(conn, period, meter=meter, account=account)
    figs = figures(data)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, png in figs.items():
        (out_dir / f"{name}.png").write_bytes(png)
    path = out_dir / "report.html"
    path.write_text(render_html(data, figs), encoding="utf-8")
    return path
