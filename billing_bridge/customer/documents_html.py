"""A bill document as one self-contained, accessible and printable HTML page.

Accessible: ``lang``, one ``h1`` and ``h2`` per section, tables with a caption and ``th`` headers (``scope``), the
usage chart an inline SVG with ``role="img"``, a title and a description (its alt text), its numbers also in a table
for screen readers; colours are not the only cue (each TOU period is named in the legend and the table). Printable: a
print style sheet (A4 margins, no backgrounds needed to read it, tables kept whole). No script, no external file.
"""

from __future__ import annotations

from decimal import Decimal
from html import escape
from typing import Any

from billing_bridge.customer.documents_model import BillDocument
from billing_bridge.customer.documents_text import (
    PALETTE,
    Row,
    charge_rows,
    day_text,
    estimated_text,
    money_text,
    payment_lines,
    plan_lines,
    register_rows,
    statement_rows,
    summary_lines,
    title,
    used_line,
)
from billing_bridge.customer.payment_reference import format_reference

__all__ = ["render_html"]

_CSS = """
body { font-family: system-ui, "DejaVu Sans", Helvetica, Arial, sans-serif; color: #111; margin: 2rem auto;
       max-width: 52rem; line-height: 1.45; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { font-size: 1.15rem; border-bottom: 1px solid #999;
       margin-top: 1.8rem; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0; } caption { text-align: left; font-weight: 600; }
th, td { padding: .2rem .4rem; border-bottom: 1px solid #ddd; text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody th { font-weight: 400; } tr.strong td, tr.strong th { font-weight: 700; }
.due { background: #eef2f7; border: 1px solid #9ab; padding: .8rem 1rem; margin: 1rem 0; }
.due .amount { font-size: 1.6rem; font-weight: 700; } .ref { font-family: ui-monospace, monospace; font-weight: 700; }
.legend span.swatch { display: inline-block; width: .9em; height: .9em; margin: 0 .3em 0 1em; vertical-align: -.1em; }
.sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .1rem 1rem; } dl.facts dt { font-weight: 600; }
@media print {
  @page { size: A4; margin: 15mm; }
  body { margin: 0; max-width: none; font-size: 10pt; } .due { border: 2px solid #000; background: none; }
  table, svg, .due { page-break-inside: avoid; } a { color: inherit; text-decoration: none; }
  .sr-only { display: none; }
}
"""


def _e(text: Any) -> str:
    return escape(str(text), quote=True)


def _table(caption: str, header: tuple[str, ...], rows: list[Row], numeric: tuple[bool, ...]) -> str:
    cls = [' class="num"' if n else "" for n in numeric]
    head = "".join(f'<th scope="col"{c}>{_e(h)}</th>' for h, c in zip(header, cls, strict=True))
    body = []
    for row in rows:
        first, *rest = row.cells
        cells = "".join(f"<td{c}>{_e(v)}</td>" for v, c in zip(rest, cls[1:], strict=True))
        strong = ' class="strong"' if row.strong else ""
        body.append(f'<tr{strong}><th scope="row">{_e(first)}</th>{cells}</tr>')
    return (
        f"<table><caption>{_e(caption)}</caption><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _chart(doc: BillDocument) -> str:
    u = doc.usage
    if u is None or not u.days:
        return ""
    totals = [float(u.day_total(i)) for i in range(len(u.days))]
    peak = max(max(totals), 0.001)
    w, h, left, bottom = 720.0, 220.0, 40.0, 24.0
    slot = (w - left) / len(u.days)
    scale = (h - bottom - 10) / peak
    shares = ", ".join(f"{p.replace('_', ' ')} {u.period_total(i):,.1f} kWh" for i, p in enumerate(u.periods))
    high = max(range(len(totals)), key=totals.__getitem__)
    desc = (
        f"Stacked bars of the kWh used on each of the {len(u.days)} days, split by time-of-use period: {shares}. "
        f"The highest day was {day_text(u.days[high])} with {totals[high]:,.1f} kWh."
    )
    parts = []
    for i, row in enumerate(u.kwh):
        y = h - bottom
        for p, v in enumerate(row):
            bar = float(v) * scale
            if bar <= 0:
                continue
            y -= bar
            r, g, b = PALETTE[p % len(PALETTE)]
            parts.append(f'<rect x="{left + i * slot + slot * .15:.1f}" y="{y:.1f}" width="{slot * .7:.1f}" '
                         f'height="{bar:.1f}" fill="rgb({r},{g},{b})"/>')  # fmt: skip
    every = max(1, round(len(u.days) / 10))
    labels = "".join(
        f'<text x="{left + i * slot + slot / 2:.1f}" y="{h - 8}" font-size="10" text-anchor="middle">{d.day}</text>'
        for i, d in enumerate(u.days) if i % every == 0
    )  # fmt: skip
    axis = (f'<text x="2" y="12" font-size="10">{peak:,.1f} kWh</text>'
            f'<line x1="{left}" y1="{h - bottom}" x2="{w}" y2="{h - bottom}" stroke="#555"/>')  # fmt: skip
    legend = "".join(
        f'<span class="swatch" style="background: rgb{PALETTE[i % len(PALETTE)]}" aria-hidden="true"></span>'
        f"{_e(p.replace('_', ' '))}: {u.period_total(i):,.1f} kWh"
        for i, p in enumerate(u.periods)
    )
    svg = (f'<svg role="img" aria-labelledby="chart-title chart-desc" viewBox="0 0 {w:g} {h:g}" width="100%">'
           f'<title id="chart-title">Daily use, {_e(day_text(doc.period_start))} to {_e(day_text(doc.period_end))}'
           f'</title><desc id="chart-desc">{_e(desc)}</desc>{axis}{"".join(parts)}{labels}</svg>')  # fmt: skip
    header = ("Day", *(p.replace("_", " ") for p in u.periods), "Total")
    rows = [
        Row((day_text(d), *(f"{v:,.3f}" for v in u.kwh[i]), f"{u.day_total(i):,.3f}")) for i, d in enumerate(u.days)
    ]
    table = _table("Daily use in kWh by time-of-use period", header, rows, (False, *([True] * (len(header) - 1))))
    return (
        f'<section aria-labelledby="usage"><h2 id="usage">Your daily use by time-of-use period</h2>{svg}'
        f'<p class="legend">{legend}</p><details><summary>Daily figures</summary>{table}</details></section>'
    )


def render_html(doc: BillDocument) -> str:
    """The bill document as an HTML5 page (UTF-8 text)."""
    c, s = doc.customer, doc.statement
    due = s.amount_due
    address = "<br>".join(_e(x) for x in (c.name or f"Account {c.account or '-'}", *c.address))
    facts = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in summary_lines(doc))
    registers = register_rows(doc)
    reg_table = (
        _table("Register reads", ("Register", "Start read", "kWh", "End read", "kWh", "Used"), registers,
               (False, False, True, False, True, True))
        if registers else "<p>No register reads are stored near the period's start and end.</p>"
    )  # fmt: skip
    charges = _table("Charges", ("Description", "Quantity", "Rate", "Amount"), charge_rows(doc),
                     (False, True, True, True))  # fmt: skip
    account = _table("Your account", ("Item", "Amount"), statement_rows(doc), (False, True))
    plan = "".join(f"<p>{_e(x)}</p>" for x in plan_lines(doc))
    plan_section = ""
    if plan:
        plan_section = f'<section aria-labelledby="plan"><h2 id="plan">Installment plan</h2>{plan}</section>'
    pay = "".join(f"<p>{_e(x)}</p>" for x in [*payment_lines(doc), *doc.notes])
    amount = money_text(max(due, Decimal(0)), doc.currency)
    due_line = f"Due by {_e(day_text(s.due_date))}" if due > 0 else "Nothing to pay"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title(doc))} - {_e(c.account or doc.meter)}</title>
<style>{_CSS}</style>
</head>
<body>
<header>
<h1>Your electricity bill</h1>
<p>{address}</p>
<div class="due" role="region" aria-label="Amount due">
<p>Amount due</p><p class="amount">{_e(amount)}</p><p>{due_line}</p>
<p>Payment reference <span class="ref">{_e(format_reference(doc.payment_reference))}</span></p>
</div>
</header>
<main>
<section aria-labelledby="summary"><h2 id="summary">{_e(title(doc))}</h2><dl class="facts">{facts}</dl>{reg_table}
</section>
{_chart(doc)}
<section aria-labelledby="charges"><h2 id="charges">Charges</h2>{charges}<p>{_e(estimated_text(doc))}</p></section>
<section aria-labelledby="account"><h2 id="account">Your account</h2>{account}</section>
{plan_section}
<section aria-labelledby="pay"><h2 id="pay">How to pay</h2>{pay}</section>
</main>
<footer><p>{_e(used_line(doc)[1])} used in {doc.days} days. Bill {_e(doc.bill_id)}, version {doc.version}.</p>
</footer>
</body>
</html>
"""
