"""The report as one self-contained HTML document (figures embedded as base64 PNG) that reads for a manager: what
happened in the period first, then the fleet, one account's story, its bill, and collections."""

from __future__ import annotations

import base64
import html
import json
from typing import Any

from amiflow_app.report.model import ReportData, money

__all__ = ["render_html"]

_STYLE = """body{font-family:sans-serif;margin:2em;max-width:1100px;line-height:1.4}table{border-collapse:collapse;
margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;font-size:13px}td.n{text-align:right}img{max-width:100%}
.none{color:#888}section{margin-bottom:2em}@media print{section{page-break-inside:avoid}}"""
_SELF_CHECK = """/* render self-check: a viewer (or a headless test) reads these attributes after load */
window.__errors = [];
window.addEventListener("error", e => window.__errors.push(String(e.message || (e.target && e.target.src))), true);
window.addEventListener("load", () => {
  const broken = [...document.images].filter(i => !i.complete || i.naturalWidth === 0).length;
  document.body.dataset.images = document.images.length;
  document.body.dataset.brokenImages = broken;
  document.body.dataset.errors = window.__errors.length;
});"""


def _cell(value: object) -> str:
    numeric = isinstance(value, int | float) or (isinstance(value, str) and value[:1].isdigit())
    return f"<td class='n'>{html.escape(str(value))}</td>" if numeric else f"<td>{html.escape(str(value))}</td>"


def _table(rows: list[tuple[Any, ...]], header: tuple[str, ...]) -> str:
    head = "".join(f"<th scope='col'>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(c) for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _amounts(by_currency: dict[str, str] | None) -> str:
    return ", ".join(money(v, c) for c, v in sorted((by_currency or {}).items())) or "none"


def _flatten(prefix: str, value: Any) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [row for k, v in value.items() for row in _flatten(f"{prefix} / {k}" if prefix else str(k), v)]
    if isinstance(value, float):
        return [(prefix, f"{value:,.3f}")]
    return [(prefix, str(value))]


def _intro(data: ReportData) -> str:
    f = data.figures
    meters = sum(p[1] for p in data.protocols)
    present = sum(p for _, p, _ in data.gaps)
    expected = sum(e for _, _, e in data.gaps)
    parts = [
        f"In {data.period}, {meters} meters ({', '.join(f'{n} {p}' for p, n, _, _ in data.protocols) or 'none'})"
        f" delivered {present / max(1, expected):.1%} of their expected 15-minute intervals;"
        f" {sum(n for _, n in data.quarantine)} payloads were quarantined with a reason.",
        f"{f.get('bills_issued', 0)} bills were issued for {_amounts(f.get('bills_total'))};"
        f" {f.get('payments', 0)} payments brought {_amounts(f.get('amount_collected'))}.",
        f"The disconnect policy allowed {f.get('disconnects_allowed', 0)} disconnects and blocked"
        f" {f.get('disconnects_blocked', 0)} evaluations by a protection, calendar, weather or rate rule;"
        f" {f.get('disconnects_not_yet', 0)} evaluations found a debt not yet due for disconnection.",
    ]
    return "<p>" + " ".join(html.escape(p) for p in parts) + "</p>"


def _bill_section(data: ReportData) -> str:
    bill = data.bill
    if not bill:
        return "<section id='bill'><h2>A bill</h2><p class='none'>no bill</p></section>"
    cur = bill.get("currency")
    lines = [
        (ln.get("code"), ln.get("description"), ln.get("quantity"), ln.get("unit"), ln.get("rate"),
         money(ln.get("amount"), cur))
        for ln in bill.get("lines", [])
    ]  # fmt: skip
    meters = bill.get("meters") or ([bill["meter"]] if bill.get("meter") else [])
    title = f"Bill {bill.get('bill_id')} of {bill.get('account') or 'no account'}"
    title += f" (meter {', '.join(str(m) for m in meters)})" if meters else ""
    share = bill.get("estimated_share")
    return (
        f"<section id='bill'><h2>{html.escape(title)}</h2>"
        f"<p>Total due: <strong>{html.escape(money(bill.get('total'), cur))}</strong>"
        + (f"; estimated share of the usage {float(share):.1%}" if share is not None else "")
        + "</p>"
        + _table(lines, ("code", "description", "quantity", "unit", "rate", "amount"))
        + "<h3>Determinants</h3>"
        + _table(_flatten("", bill.get("determinants", {})), ("determinant", "value"))
        + "</section>"
    )


def _insights_section(data: ReportData) -> str:
    if data.insights is None:
        if not data.insights_note:
            return ""
        note = html.escape(data.insights_note)
        return f"<section id='insights'><h2>Usage insights</h2><p class='none'>{note}</p></section>"
    ins = data.insights
    rows = [
        (o.tariff, o.version, o.name, money(o.total, o.currency),
         "current tariff" if o.current else "hypothetical")
        for o in ins.advice.options
    ]  # fmt: skip
    words = "".join(f"<li>{html.escape(line.strip())}</li>" for line in ins.sentences() if not line.startswith("  "))
    table = _table(rows, ("tariff", "version", "name", "this month would cost", "")) if rows else ""
    return (
        f"<section id='insights'><h2>Usage insights and the best tariff for {html.escape(ins.meter.meter)}</h2>"
        f"<ul>{words}</ul>{table}</section>"
    )


def render_html(data: ReportData, figs: dict[str, bytes]) -> str:
    """The whole document; ``figs`` from :func:`amiflow_app.report.figures.figures`."""

    def img(name: str, alt: str) -> str:
        if name not in figs:
            return "<p class='none'>no data</p>"
        return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{base64.b64encode(figs[name]).decode()}'>"

    f = data.figures
    gaps = [(m, p, e, e - p) for m, p, e in data.gaps if p < e][:15]
    protocols = [
        (name, n, "n/a (push)" if polls is None else polls, "n/a (push)" if ok is None else ok,
         f"{data.completeness.get(name, 0.0):.1%}")
        for name, n, polls, ok in data.protocols
    ]  # fmt: skip
    story = ""
    if data.story is not None:
        events = [(when.strftime("%Y-%m-%d %H:%M UTC"), what) for when, what in data.story.events]
        story = (
            f"<section id='account'><h2>Account {html.escape(data.story.account)}"
            f"{f' (meter {html.escape(data.story.meter)})' if data.story.meter else ''}</h2>"
            + (_table(events, ("when", "what happened")) if events else "<p class='none'>no bill this period</p>")
            + "</section>"
        )
    kpis = [
        ("bills issued", f.get("bills_issued", 0)),
        ("amount billed", _amounts(f.get("bills_total"))),
        ("payments", f.get("payments", 0)),
        ("amount collected", _amounts(f.get("amount_collected"))),
        ("collection rate", ", ".join(f"{v} ({c})" for c, v in sorted(f.get("collection_rate", {}).items())) or "n/a"),
        ("deliveries to billing", ", ".join(f"{k} {v}" for k, v in f.get("deliveries_by_kind", {}).items()) or "0"),
        *((f"notices: {k.replace('_', ' ')}", v) for k, v in f.get("notices", {}).items()),
        ("disconnects allowed", f.get("disconnects_allowed", 0)),
        ("disconnect evaluations blocked by a rule", f.get("disconnects_blocked", 0)),
        ("disconnect evaluations not yet due", f.get("disconnects_not_yet", 0)),
    ]
    figures_json = json.dumps(f, sort_keys=True, default=str).replace("</", "<\\/")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>amiflow report {html.escape(data.period)}</title>
<style>{_STYLE}</style><script>{_SELF_CHECK}</script>
<script type="application/json" id="figures">{figures_json}</script></head><body>
<h1>amiflow report: {html.escape(data.period)}</h1><p>generated {html.escape(data.generated_at)}</p>
<section id="summary"><h2>The period in brief</h2>{_intro(data)}</section>
<section id="fleet"><h2>Fleet health</h2>
{_table(protocols, ("protocol", "meters", "polls", "successful polls", "intervals received"))}
{img("fleet_health", "read success per protocol")}
<h3>Meters with gaps (intervals present of expected)</h3>
{_table(gaps, ("meter", "present", "expected", "missing")) if gaps else "<p>no gaps</p>"}
<h3>Quarantine</h3>{_table(data.quarantine, ("reason", "payloads"))}{img("quarantine", "quarantine by reason")}
</section>
<section id="load"><h2>Load curve{f" of {html.escape(data.meter)}" if data.meter else ""}</h2>
{img("load_curve", "load curve with VEE flags")}</section>
{story}
{_bill_section(data)}
{_insights_section(data)}
<section id="collection"><h2>Arrears and collection</h2>{_table(kpis, ("KPI", "value"))}
{img("disconnects", "disconnect decisions by rule")}</section>
</body></html>
"""
