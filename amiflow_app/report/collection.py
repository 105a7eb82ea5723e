"""``amiflow report collection --period YYYY-MM --by region|collector``: the collection KPIs of
:mod:`billing_bridge.collection_kpis` per group for a month, as a text table, CSV, or a self-contained HTML report
with the table and a plot per KPI over the last 12 months (PNGs beside it and embedded, the rows as JSON in
``<script id="collection">`` under summary.json's names)."""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg

from amiflow_app.report.collection_figures import KPI_TITLES, kpi_figures
from amiflow_app.report.collection_tables import kpi_csv, kpi_html_table, kpi_text
from billing_bridge.collection_kpis import GroupKpis, kpi_history, totals
from billing_bridge.policy import RuleSet

__all__ = ["CollectionReport", "gather_collection", "render_collection_html", "write_collection_report"]

_STYLE = """body{font-family:sans-serif;margin:2em;max-width:1200px;line-height:1.4}table{border-collapse:collapse;
margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;font-size:13px}td.n{text-align:right}
tr.total{font-weight:bold}.plots{display:flex;flex-wrap:wrap;gap:8px}.plots img{width:520px;max-width:100%}"""


@dataclass(slots=True)
class CollectionReport:
    """The month's rows per group, the totals per currency and the history the plots draw (oldest first)."""

    period: date
    by: str
    ruleset: RuleSet
    history: list[tuple[date, list[GroupKpis]]] = field(default_factory=list)
    generated_at: str = ""

    @property
    def rows(self) -> list[GroupKpis]:
        return self.history[-1][1] if self.history else []

    @property
    def totals(self) -> list[GroupKpis]:
        return list(totals(self.rows).values())

    def as_json(self) -> list[dict[str, Any]]:
        """The month's rows as in summary.json (``collection_by_region`` / ``collection_by_collector``)."""
        return [r.as_json(self.by) for r in self.rows]

    def text(self) -> str:
        return kpi_text(self.rows, self.by, self.totals)

    def csv(self) -> str:
        return kpi_csv(self.rows, self.by)


def gather_collection(
    conn: psycopg.Connection[Any], ruleset: RuleSet, period: date, by: str, *, months: int = 12
) -> CollectionReport:
    """The KPIs of ``period``'s month and the ``months`` - 1 before it, grouped ``by`` region or collector."""
    if by not in ("region", "collector"):
        raise ValueError(f"group by region or collector, not {by!r}")
    history = kpi_history(conn, ruleset, period, "region" if by == "region" else "collector", months)
    return CollectionReport(period, by, ruleset, history, datetime.now(UTC).isoformat(timespec="seconds"))


def render_collection_html(report: CollectionReport, figs: dict[str, bytes]) -> str:
    """The whole document; ``figs`` from :func:`amiflow_app.report.collection_figures.kpi_figures`."""
    month = report.period.strftime("%Y-%m")
    plots = "".join(
        f"<figure><img alt='{html.escape(KPI_TITLES[name[4:]])} by {report.by}'"
        f" src='data:image/png;base64,{base64.b64encode(png).decode()}'></figure>"
        for name, png in figs.items()
    )
    first = report.history[0][0].strftime("%Y-%m") if report.history else month
    rows = json.dumps(report.as_json(), sort_keys=True).replace("</", "<\\/")
    rs = report.ruleset
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>amiflow collection {html.escape(month)} by {report.by}</title>
<style>{_STYLE}</style><script type="application/json" id="collection">{rows}</script></head><body>
<h1>Collection by {html.escape(report.by)}: {html.escape(month)}</h1>
<p>generated {html.escape(report.generated_at)}; rule set {html.escape(rs.id)} {html.escape(rs.version)}
(time zone {html.escape(rs.timezone)}). Billed: the bills issued in the month (the day after their period);
arrears: what is overdue at the end of the month's last day, by days past due; rate: collected / billed; DSO:
receivables / billed x days of the month; plans: active at the month's end / kept / broken in it (a/k/b).</p>
<section id="kpis"><h2>KPIs per {html.escape(report.by)}</h2>{kpi_html_table(report.rows, report.by, report.totals)}
</section>
<section id="trends"><h2>The last {len(report.history)} months ({first} to {month})</h2>
<div class="plots">{plots or "<p>no data</p>"}</div></section>
</body></html>
"""


def write_collection_report(report: CollectionReport, out_dir: Path) -> Path:
    """Write ``collection-{by}-{YYYY-MM}.html`` with its PNGs and CSV into ``out_dir``; returns the HTML path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"collection-{report.by}-{report.period:%Y-%m}"
    figs = kpi_figures(report.history)
    for name, png in figs.items():
        (out_dir / f"{stem}-{name}.png").write_bytes(png)
    (out_dir / f"{stem}.csv").write_text(report.csv(), encoding="utf-8")
    path = out_dir / f"{stem}.html"
    path.write_text(render_collection_html(report, figs), encoding="utf-8")
    return path
