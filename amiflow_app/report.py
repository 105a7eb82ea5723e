"""`amiflow report --period YYYY-MM`: a self-contained HTML report with PNG plots, from any amiflow database.

Sections: fleet health (read success per protocol, gaps, quarantine by reason), the load curve of one meter with its
VEE flags, one bill with its determinants, and arrears and collection KPIs. Every figure is also written as a PNG
beside the HTML, which embeds them (base64) so the one file can be mailed or archived.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from amiflow.errors import ConfigError

__all__ = ["ReportData", "build_report", "collect", "period_bounds"]


@dataclass(slots=True)
class ReportData:
    period: str
    generated_at: str
    protocols: list[tuple[str, int, int, int]] = field(default_factory=list)  # protocol, meters, polls, successes
    gaps: list[tuple[str, int, int]] = field(default_factory=list)  # meter, present, expected
    quarantine: list[tuple[str, int]] = field(default_factory=list)
    completeness: dict[str, float] = field(default_factory=dict)  # protocol -> intervals present / expected
    meter: str | None = None
    curve: list[tuple[datetime, float, list[str]]] = field(default_factory=list)
    bill: dict[str, Any] | None = None
    kpis: dict[str, Any] = field(default_factory=dict)
    decisions: list[tuple[str, bool, int]] = field(default_factory=list)  # rule, allowed, count


def period_bounds(period: str) -> tuple[datetime, datetime]:
    try:
        year, month = (int(x) for x in period.split("-"))
        start = datetime(year, month, 1, tzinfo=UTC)
    except ValueError:
        raise ConfigError(f"--period {period!r}: expected YYYY-MM, e.g. 2026-11") from None
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def _exists(conn: psycopg.Connection[Any], name: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone() == (True,)


def collect(conn: psycopg.Connection[Any], period: str, *, meter: str | None = None) -> ReportData:
    """Gather the report's numbers from the contract views and the operational tables."""
    start, end = period_bounds(period)
    data = ReportData(period, datetime.now(UTC).isoformat(timespec="seconds"))
    expected = int((end - start).total_seconds() // 900)
    polls = (
        "coalesce(sum(p.polls), 0), coalesce(sum(p.successes), 0)" if _exists(conn, "amiflow.poll_state") else "0, 0"
    )
    join = "LEFT JOIN amiflow.poll_state p ON p.meter_id = m.id" if _exists(conn, "amiflow.poll_state") else ""
    data.protocols = [
        tuple(r)
        for r in conn.execute(
            f"SELECT m.protocol, count(*), {polls} FROM amiflow.meters m {join} GROUP BY 1 ORDER BY 1"
        ).fetchall()
    ]
    rows = conn.execute(
        "SELECT m.name, count(r.ts)::int, %s, m.protocol FROM amiflow.meters m LEFT JOIN amiflow.readings r"
        " ON r.meter_id = m.id AND r.channel_id = 1 AND r.ts > %s AND r.ts <= %s"
        " GROUP BY m.name, m.protocol ORDER BY count(r.ts), m.name",
        (expected, start, end),
    ).fetchall()
    data.gaps = [(r[0], r[1], r[2]) for r in rows]
    for protocol in {r[3] for r in rows}:
        mine = [r for r in rows if r[3] == protocol]
        data.completeness[protocol] = sum(r[1] for r in mine) / max(1, sum(r[2] for r in mine))
    data.quarantine = [
        (str(r[0]), int(r[1]))
        for r in conn.execute("SELECT reason, count(*) FROM amiflow.v_quarantine GROUP BY 1 ORDER BY 2 DESC").fetchall()
    ]
    if meter is None and _exists(conn, "amiflow.v_vee_intervals"):
        row = conn.execute(
            "SELECT meter FROM amiflow.v_vee_intervals WHERE ts > %s AND ts <= %s GROUP BY meter"
            " ORDER BY count(*) DESC, meter LIMIT 1",
            (start, end),
        ).fetchone()
        meter = row[0] if row else None
    if meter is None:
        row = conn.execute(
            "SELECT m.name FROM amiflow.meters m JOIN amiflow.readings r ON r.meter_id = m.id AND r.channel_id = 1"
            " WHERE r.ts > %s AND r.ts <= %s GROUP BY m.name ORDER BY count(*) FILTER (WHERE r.quality <> 0) DESC,"
            " m.name LIMIT 1",
            (start, end),
        ).fetchone()
        meter = row[0] if row else None
    data.meter = meter
    if meter:
        data.curve = [
            (r[0], float(r[1]), list(r[2]))
            for r in conn.execute(
                "SELECT ts, value, quality FROM amiflow.v_readings WHERE meter = %s AND obis = '1-0:1.29.0'"
                " AND ts > %s AND ts <= %s ORDER BY ts",
                (meter, start, end),
            ).fetchall()
        ]
        _add_vee_flags(conn, data, meter, start, end)
    _collect_billing(conn, data, start, end)
    return data


def _add_vee_flags(conn: psycopg.Connection[Any], data: ReportData, meter: str, start: datetime, end: datetime) -> None:
    """Mark the curve's intervals with the VEE rules that fired and the estimation method used (pre/post kept)."""
    if not _exists(conn, "amiflow.v_vee_intervals"):
        return
    found: dict[datetime, tuple[float | None, list[str]]] = {}
    for ts, post, rules, method in conn.execute(
        "SELECT ts, post_value, rules, method FROM amiflow.v_vee_intervals WHERE meter = %s AND obis = '1-0:1.29.0'"
        " AND ts > %s AND ts <= %s",
        (meter, start, end),
    ).fetchall():
        found[ts] = (post, [*rules, *([f"estimated ({method})"] if method != "none" else [])])
    if not found:
        return
    stored = {t for t, _, _ in data.curve}
    curve = [(t, v, sorted({*q, *found.get(t, (None, []))[1]})) for t, v, q in data.curve]
    # intervals that were missing and estimated appear with their estimated value
    curve += [(t, float(post), labels) for t, (post, labels) in found.items() if t not in stored and post is not None]
    data.curve = sorted(curve, key=lambda c: c[0])


def _collect_billing(conn: psycopg.Connection[Any], data: ReportData, start: datetime, end: datetime) -> None:
    if _exists(conn, "amiflow.v_bills"):
        row = conn.execute(
            "SELECT count(*), coalesce(sum(total), 0) FROM amiflow.v_bills WHERE period_start >= %s::date"
            " AND period_start < %s::date",
            (start.date(), end.date()),
        ).fetchone()
        data.kpis["bills_issued"] = int(row[0]) if row else 0
        data.kpis["amount_billed"] = str(row[1]) if row else "0"
    bill = conn.execute(
        "SELECT payload FROM amiflow.outbox WHERE kind = 'bill' ORDER BY (payload->>'total')::numeric DESC NULLS LAST"
        " LIMIT 1"
    ).fetchone()
    data.bill = bill[0] if bill else None
    if _exists(conn, "amiflow.payments"):
        row = conn.execute(
            "SELECT coalesce(sum(amount), 0) FROM amiflow.payments WHERE paid_at >= %s", (start,)
        ).fetchone()
        data.kpis["amount_collected"] = str(row[0]) if row else "0"
        billed = float(data.kpis.get("amount_billed", 0) or 0)
        data.kpis["collection_rate"] = f"{float(row[0]) / billed:.1%}" if row and billed else "n/a"
    counts = conn.execute(
        "SELECT payload->>'type', count(*) FROM amiflow.outbox WHERE kind = 'notice' GROUP BY 1"
    ).fetchall()
    for notice, count in counts:
        data.kpis[f"notices_{notice}"] = int(count)
    if _exists(conn, "amiflow.disconnect_decisions"):
        data.decisions = [
            (str(r[0]), bool(r[1]), int(r[2]))
            for r in conn.execute(
                "SELECT rule, allowed, count(*) FROM amiflow.disconnect_decisions,"
                " unnest(CASE WHEN allowed THEN ARRAY['allowed'] ELSE deciding_rules END) AS rule"
                " GROUP BY 1, 2 ORDER BY 2 DESC, 3 DESC"
            ).fetchall()
        ]
        data.kpis["disconnects_allowed"] = sum(c for _, a, c in data.decisions if a)
        data.kpis["disconnects_blocked"] = conn.execute(
            "SELECT count(*) FROM amiflow.disconnect_decisions WHERE NOT allowed"
        ).fetchone()[0]  # type: ignore[index]


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _figures(data: ReportData) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs: dict[str, bytes] = {}
    fig, ax = plt.subplots(figsize=(7, 3))
    names = [p[0] for p in data.protocols]
    x = list(range(len(names)))
    polled = [(p[3] / p[2] * 100) if p[2] else float("nan") for p in data.protocols]
    complete = [data.completeness.get(n, 0.0) * 100 for n in names]
    ax.bar([i - 0.2 for i in x], polled, width=0.4, color="#3b7dd8", label="successful polls")
    ax.bar([i + 0.2 for i in x], complete, width=0.4, color="#8fb8ea", label="intervals received")
    ax.set_xticks(x, names)
    ax.set_ylim(0, 105)
    ax.set_ylabel("%")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("Read success per protocol")
    figs["fleet_health"] = _png(fig)
    fig, ax = plt.subplots(figsize=(6, 3))
    reasons = data.quarantine[:10] or [("none", 0)]
    ax.barh([r[0] for r in reasons], [r[1] for r in reasons], color="#d8643b")
    ax.set_title("Quarantined payloads by reason")
    figs["quarantine"] = _png(fig)
    if data.curve:
        fig, ax = plt.subplots(figsize=(10, 3.5))
        ts: Any = [c[0] for c in data.curve]
        ax.plot(ts, [c[1] / 1000 for c in data.curve], lw=0.8, color="#333")
        flagged = [(t, v / 1000, q) for t, v, q in data.curve if q]
        kinds = sorted({f for _, _, q in flagged for f in q})
        for kind in kinds:
            pts: Any = [(t, v) for t, v, q in flagged if kind in q]
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=12, label=kind, zorder=3)
        if kinds:
            ax.legend(fontsize=7, loc="upper right")
        ax.set_ylabel("kWh per 15 min")
        ax.set_title(f"Load curve of {data.meter} with VEE flags")
        fig.autofmt_xdate()
        figs["load_curve"] = _png(fig)
    if data.decisions:
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.barh(
            [d[0] for d in data.decisions],
            [d[2] for d in data.decisions],
            color=["#3bd87d" if d[1] else "#d83b3b" for d in data.decisions],
        )
        ax.set_title("Disconnect decisions: allowed, and blocked by rule")
        figs["disconnects"] = _png(fig)
    return figs


def _table(rows: list[tuple[Any, ...]], header: tuple[str, ...]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(data: ReportData, figs: dict[str, bytes]) -> str:
    def img(name: str, alt: str) -> str:
        if name not in figs:
            return "<p class='none'>no data</p>"
        return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{base64.b64encode(figs[name]).decode()}'>"

    gaps = [(m, p, e, e - p) for m, p, e in data.gaps if p < e][:15]
    protocols = [(*p, f"{data.completeness.get(p[0], 0.0):.1%}") for p in data.protocols]
    bill = data.bill or {}
    lines = [
        (ln.get("code"), ln.get("description"), ln.get("quantity"), ln.get("unit"), ln.get("rate"), ln.get("amount"))
        for ln in bill.get("lines", [])
    ]
    determinants = json.dumps(bill.get("determinants", {}), indent=1) if bill else ""
    kpis = [(k.replace("_", " "), v) for k, v in data.kpis.items()]
    bill_title = ""
    header = ("code", "description", "quantity", "unit", "rate", "amount")
    bill_table = _table(lines, header) if bill else "<p class='none'>no bill</p>"
    if bill:
        bill_title = html.escape(f" ({bill.get('bill_id')}, total {bill.get('total')} {bill.get('currency')})")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>amiflow report {html.escape(data.period)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;margin:.5em 0}}
td,th{{border:1px solid #ccc;padding:2px 8px;font-size:13px}}img{{max-width:100%}}.none{{color:#888}}
section{{margin-bottom:2em}}</style>
<script>/* render self-check: a viewer (or a headless test) reads these attributes after load */
window.__errors = [];
window.addEventListener("error", e => window.__errors.push(String(e.message || (e.target && e.target.src))), true);
window.addEventListener("load", () => {{
  const broken = [...document.images].filter(i => !i.complete || i.naturalWidth === 0).length;
  document.body.dataset.images = document.images.length;
  document.body.dataset.brokenImages = broken;
  document.body.dataset.errors = window.__errors.length;
}});
</script></head><body>
<h1>amiflow report: {html.escape(data.period)}</h1><p>generated {html.escape(data.generated_at)}</p>
<section id="fleet"><h2>Fleet health</h2>
{_table(protocols, ("protocol", "meters", "polls", "successful polls", "intervals received"))}
{img("fleet_health", "read success per protocol")}
<h3>Meters with gaps (intervals present of expected)</h3>
{_table(gaps, ("meter", "present", "expected", "missing")) if gaps else "<p>no gaps</p>"}
<h3>Quarantine</h3>{_table(data.quarantine, ("reason", "payloads"))}{img("quarantine", "quarantine by reason")}
</section>
<section id="load"><h2>Load curve{f" of {html.escape(data.meter)}" if data.meter else ""}</h2>
{img("load_curve", "load curve with VEE flags")}</section>
<section id="bill"><h2>A bill{bill_title}</h2>
{bill_table}
{f"<h3>Determinants</h3><pre>{html.escape(determinants)}</pre>" if bill else ""}</section>
<section id="collection"><h2>Arrears and collection</h2>{_table(kpis, ("KPI", "value"))}
{img("disconnects", "disconnect decisions by rule")}</section>
</body></html>
"""


def build_report(conn: psycopg.Connection[Any], period: str, out_dir: Path, *, meter: str | None = None) -> Path:
    """Write report.html and the PNG figures into ``out_dir``; returns the HTML path."""
    data = collect(conn, period, meter=meter)
    figs = _figures(data)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, png in figs.items():
        (out_dir / f"{name}.png").write_bytes(png)
    path = out_dir / "report.html"
    path.write_text(render_html(data, figs), encoding="utf-8")
    return path
