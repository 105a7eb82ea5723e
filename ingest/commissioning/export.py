"""The commissioning sheet as a document: accessible, printable HTML and a PDF (fpdf2, LGPL-3.0, used as a library).

Both lay out :func:`ingest.commissioning.sheet.sheet_sections`: the verdict first, then each section as a table with
real headings (``<th scope>``), results written out (PASS/WARN/FAIL/SKIP, never colour alone), and print styles
that keep a table on one page where it fits.
"""

from __future__ import annotations

from html import escape

from ingest.commissioning.report import CommissioningReport
from ingest.commissioning.sheet import Section, sheet_sections

__all__ = ["render_html", "render_pdf"]

_CSS = """
body { font-family: system-ui, "Segoe UI", Arial, sans-serif; margin: 2rem; color: #111; line-height: 1.4; }
h1 { font-size: 1.5rem; margin-bottom: .25rem; }
h2 { font-size: 1.1rem; margin: 1.5rem 0 .4rem; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #888; padding: .25rem .5rem; text-align: left; vertical-align: top; }
thead th { background: #e8e8e8; }
th[scope="row"] { width: 12rem; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.verdict { font-size: 1.2rem; font-weight: 700; padding: .5rem .75rem; border: 2px solid #111; display: inline-block; }
.PASS { color: #0a5d1e; } .WARN { color: #7a4b00; } .FAIL { color: #a50e0e; } .SKIP { color: #444; }
@media print { body { margin: 1cm; } section { break-inside: avoid; } a { color: inherit; } }
"""


def _cell(text: str, index: int, section: Section) -> str:
    cls = []
    if index in section.numeric:
        cls.append("num")
    if section.title == "Checks" and index == 0:
        cls.append(text)
    attr = f' class="{" ".join(cls)}"' if cls else ""
    return f"<td{attr}>{escape(text)}</td>"


def _html_section(section: Section) -> str:
    slug = section.title.lower().replace(" ", "-")
    out = [f'<section aria-labelledby="{slug}">', f'<h2 id="{slug}">{escape(section.title)}</h2>', "<table>"]
    if section.header:
        heads = "".join(f'<th scope="col">{escape(h) or "<span hidden>item</span>"}</th>' for h in section.header)
        out.append(f"<thead><tr>{heads}</tr></thead>")
        body = ["<tr>" + "".join(_cell(c, i, section) for i, c in enumerate(r)) + "</tr>" for r in section.rows]
    else:
        body = [
            f'<tr><th scope="row">{escape(r[0])}</th>' + "".join(f"<td>{escape(c)}</td>" for c in r[1:]) + "</tr>"
            for r in section.rows
        ]
    out.extend(["<tbody>", *body, "</tbody>", "</table>", "</section>"])
    return "\n".join(out)


def render_html(report: CommissioningReport) -> str:
    """A standalone HTML page (no scripts, no external resources)."""
    title = f"Commissioning sheet: {report.meter or report.uri}"
    verdict = report.verdict.split()[0]
    parts = [
        "<!doctype html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<main>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="verdict {verdict}" role="status">Verdict: {escape(report.verdict_line())}</p>',
    ]
    parts.extend(_html_section(s) for s in sheet_sections(report) if s.title != "Verdict")
    parts.extend(["</main>", "</body>", "</html>", ""])
    return "\n".join(parts)


_PDF_WIDTHS = {
    "Checks": (1.2, 2.2, 7.0, 4.8),
    "Start register reads": (2.0, 3.5, 2.5, 2.5, 5.5),
    "Instantaneous values": (2.0, 3.5, 2.5, 2.5, 5.5),
}


def _latin1(text: str) -> str:
    """The core PDF fonts cover Latin-1 only."""
    return text.replace("\u2264", "<=").replace("\u2265", ">=").encode("latin-1", "replace").decode("latin-1")


def render_pdf(report: CommissioningReport) -> bytes:
    """The sheet as an A4 landscape PDF."""
    from fpdf import FPDF
    from fpdf.fonts import FontFace

    pdf = FPDF(orientation="landscape", format="A4")
    pdf.set_title(_latin1(f"Commissioning sheet: {report.meter or report.uri}"))
    pdf.set_creator("amiflow")
    pdf.set_auto_page_break(auto=True, margin=12)
    pdf.add_page()
    pdf.set_font("Helvetica", style="B", size=15)
    pdf.cell(text=_latin1(f"Commissioning sheet: {report.meter or report.uri}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", style="B", size=12)
    pdf.cell(text=_latin1(f"Verdict: {report.verdict_line()}"), new_x="LMARGIN", new_y="NEXT")
    heading = FontFace(emphasis="BOLD", fill_color=(232, 232, 232))
    for section in sheet_sections(report):
        if section.title == "Verdict":
            continue
        pdf.ln(3)
        pdf.set_font("Helvetica", style="B", size=11)
        pdf.cell(text=_latin1(section.title), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=8)
        rows = [section.header, *section.rows] if section.header else list(section.rows)
        if not rows:
            continue
        widths = _PDF_WIDTHS.get(section.title) or ((1, 3) if not section.header else None)
        with pdf.table(
            col_widths=widths, first_row_as_headings=bool(section.header), headings_style=heading, line_height=4.5
        ) as table:
            for r in rows:
                row = table.row()
                for cell in r:
                    row.cell(_latin1(cell))
    return bytes(pdf.output())
