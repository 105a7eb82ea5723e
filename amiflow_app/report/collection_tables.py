"""The collection KPIs as tables: CSV (one row per group and currency, the columns of ``summary.json``), the text
table ``amiflow report collection`` prints, and the HTML table of the collection report."""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Sequence
from decimal import Decimal

from billing_bridge.collection_kpis import GroupKpis

__all__ = ["CSV_COLUMNS", "HEADERS", "cells", "kpi_csv", "kpi_html_table", "kpi_text"]

#: The CSV columns after the group's: the same names as in summary.json.
CSV_COLUMNS = (
    "currency", "accounts", "billed", "collected", "collection_rate", "arrears_0_30", "arrears_31_60",
    "arrears_61_90", "arrears_over_90", "receivables", "plans_created", "plans_active", "plans_kept", "plans_broken",
    "reminders_sent", "disconnects", "reconnects", "dso_days",
)  # fmt: skip
#: Column headings of the text and HTML tables.
HEADERS = ("currency", "accounts", "billed", "collected", "rate", "0-30", "31-60", "61-90", ">90", "plans a/k/b",
           "reminders", "disconnects", "reconnects", "DSO days")  # fmt: skip


def _money(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01')):,}"


def cells(r: GroupKpis) -> tuple[str, ...]:
    """One group's row as the text and HTML tables show it (after the group's name)."""
    rate = "n/a" if r.collection_rate is None else f"{r.collection_rate:.1%}"
    dso = "n/a" if r.dso_days is None else str(r.dso_days)
    bands = (r.arrears_0_30, r.arrears_31_60, r.arrears_61_90, r.arrears_over_90)
    return (
        r.currency, str(r.accounts), _money(r.billed), _money(r.collected), rate, *(_money(b) for b in bands),
        f"{r.plans_active}/{r.plans_kept}/{r.plans_broken}", str(r.reminders_sent), str(r.disconnects),
        str(r.reconnects), dso,
    )  # fmt: skip


def kpi_csv(rows: Sequence[GroupKpis], by: str) -> str:
    """CSV with a header: ``by`` (region or collector), then :data:`CSV_COLUMNS`; money as plain decimals."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([by, *CSV_COLUMNS])
    for r in rows:
        data = r.as_json(by)
        writer.writerow([r.group, *("" if data[c] is None else data[c] for c in CSV_COLUMNS)])
    return buf.getvalue()


def kpi_text(rows: Sequence[GroupKpis], by: str, totals: Sequence[GroupKpis] = ()) -> str:
    """An aligned text table, one line per group, then the totals per currency."""
    table = [(by, *HEADERS), *((r.group, *cells(r)) for r in rows), *((t.group, *cells(t)) for t in totals)]
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    lines = []
    for n, line in enumerate(table):
        pairs = enumerate(zip(line, widths, strict=True))
        lines.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in pairs))
        if n == 0 or (totals and n == len(rows)):
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def kpi_html_table(rows: Sequence[GroupKpis], by: str, totals: Sequence[GroupKpis] = ()) -> str:
    """The KPI table as HTML (numbers right-aligned, the totals in bold)."""
    head = "".join(f"<th scope='col'>{html.escape(h)}</th>" for h in (by, *HEADERS))

    def row(r: GroupKpis, total: bool) -> str:
        values = "".join(f"<td{' class=n' if i else ''}>{html.escape(c)}</td>" for i, c in enumerate(cells(r)))
        return f"<tr{' class=total' if total else ''}><th scope='row'>{html.escape(r.group)}</th>{values}</tr>"

    body = "".join(row(r, False) for r in rows) + "".join(row(t, True) for t in totals)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
