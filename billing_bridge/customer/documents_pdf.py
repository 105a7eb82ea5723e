"""A bill document as an A4 PDF, drawn with fpdf2 (LGPL-3.0, used unmodified as a library).

Text is placed at computed positions (``FPDF.text``) rather than flowed through ``cell``: a bill's layout is fixed,
and fpdf2's flowing layout costs about four times as much per text run (measured: 8.8 ms against 2.2 ms for the same
page), which decides whether 10,000 bills take one minute or four. Documents whose text is all Latin-1 use the PDF
core fonts (Helvetica: nothing to embed); any other text switches that document to DejaVu Sans (shipped with
matplotlib, a dependency), embedded as a subset - correct for every name, but about 100 times slower, so only where
needed. The output is deterministic: the creation date is the bill's issue time, so the same document always gives
the same bytes (an e-bill retry attaches an identical file).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from fpdf import FPDF

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
)
from billing_bridge.customer.payment_reference import format_reference

__all__ = ["render_pdf"]

_LEFT, _RIGHT, _BOTTOM = 15.0, 195.0, 280.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _unicode_font() -> tuple[Path, Path] | None:
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf"
    regular, bold = folder / "DejaVuSans.ttf", folder / "DejaVuSans-Bold.ttf"
    return (regular, bold) if regular.exists() and bold.exists() else None


def _strings(doc: BillDocument) -> Iterable[str]:
    c = doc.customer
    yield from (c.name or "", *c.address, c.account or "", doc.meter, doc.tariff_name, doc.bill_id)
    yield from (line.description for line in doc.lines)
    yield from doc.notes


def _latin1(doc: BillDocument) -> bool:
    try:
        for s in _strings(doc):
            s.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


class _Page:
    """Positioned drawing on an FPDF: text runs (left or right aligned), rules, and a flowing ``y``."""

    def __init__(self, doc: BillDocument) -> None:
        pdf = FPDF(format="A4", unit="mm")
        pdf.set_auto_page_break(False)
        pdf.set_creation_date(doc.issued_at or _EPOCH)
        pdf.set_title(title(doc))
        pdf.set_author("amiflow")
        pdf.set_creator("amiflow")
        pdf.set_lang("en")
        font = "Helvetica"
        latin1 = _latin1(doc)
        fonts = None if latin1 else _unicode_font()
        if fonts is not None:
            pdf.add_font("DejaVu", "", str(fonts[0]))
            pdf.add_font("DejaVu", "B", str(fonts[1]))
            font = "DejaVu"
        # without the Unicode font (no matplotlib data), text outside Latin-1 is printed with "?" in its place
        self.pdf, self.font_name, self.y, self.fallback = pdf, font, 0.0, fonts is None and not latin1
        self._font_key: tuple[bool, float] | None = None
        pdf.add_page()

    def safe(self, text: str) -> str:
        if not self.fallback:
            return text
        return text.encode("latin-1", "replace").decode("latin-1")

    def font(self, size: float, bold: bool = False) -> None:
        """Set the font unless it is already set (fpdf2's ``set_font`` is a large share of a page's time)."""
        key = (bold, size)
        if key != self._font_key:
            self.pdf.set_font(self.font_name, "B" if bold else "", size)
            self._font_key = key

    def width(self, text: str) -> float:
        """The width of ``text`` in mm in the current font: core fonts from their width table directly."""
        font = self.pdf.current_font
        widths = getattr(font, "cw", None)
        if self.font_name != "Helvetica" or not isinstance(widths, dict):
            return float(self.pdf.get_string_width(text))
        try:
            units = sum(map(widths.__getitem__, text))
        except KeyError:
            units = sum(widths.get(c, 0) for c in text)
        return float(units) * self.pdf.font_size / 1000

    def text(self, x: float, y: float, text: str, size: float = 9, bold: bool = False, right: bool = False) -> None:
        self.font(size, bold)
        text = self.safe(text)
        if right:
            x -= self.width(text)
        self.pdf.text(x, y, text)

    def rule(self, y: float, width: float = 0.2) -> None:
        self.pdf.set_line_width(width)
        self.pdf.line(_LEFT, y, _RIGHT, y)

    def need(self, height: float) -> None:
        """Start a new page when ``height`` mm do not fit below ``y``."""
        if self.y + height > _BOTTOM:
            self.pdf.add_page()
            self.y = 20.0

    def heading(self, text: str, keep: float = 0.0) -> None:
        """A section title, moved to the next page with the first ``keep`` mm of its section."""
        self.need(14 + keep)
        self.y += 7
        self.text(_LEFT, self.y, text, 11.5, bold=True)
        self.y += 2
        self.rule(self.y)
        self.y += 4.5

    def table(self, header: Sequence[str], rows: Sequence[Row], xs: Sequence[float], right: Sequence[bool]) -> None:
        """Columns starting (left aligned) or ending (right aligned) at ``xs``; kept on one page when it fits."""
        whole = 6 + 4.6 * len(rows)
        self.need(whole if whole < _BOTTOM - 40 else 10)
        for x, cell, r in zip(xs, header, right, strict=True):
            self.text(x, self.y, cell, 8, bold=True, right=r)
        self.y += 1.5
        self.rule(self.y, 0.1)
        self.y += 4
        for row in rows:
            self.need(5)
            for x, cell, r in zip(xs, row.cells, right, strict=True):
                self.text(x, self.y, cell, 8.5, bold=row.strong, right=r)
            self.y += 4.6

    def paragraph(self, text: str, size: float = 8.5, width: float = _RIGHT - _LEFT) -> None:
        """Greedy word wrap to ``width`` mm (each word measured once)."""
        self.font(size)
        space = self.width(" ")
        lines: list[list[str]] = [[]]
        used = 0.0
        for word in self.safe(text).split():
            w = self.width(word)
            if lines[-1] and used + space + w > width:
                lines.append([])
                used = 0.0
            used += (space if lines[-1] else 0.0) + w
            lines[-1].append(word)
        for words in lines:
            if words:
                self.need(5)
                self.pdf.text(_LEFT, self.y, " ".join(words))
                self.y += size * 0.45
        self.y += 1.5


def _header(page: _Page, doc: BillDocument) -> None:
    page.text(_LEFT, 20, "Your electricity bill", 18, bold=True)
    page.text(_RIGHT, 16, f"Bill date {day_text(doc.issued_on)}", 8.5, right=True)
    page.text(_RIGHT, 20.5, f"Bill {doc.bill_id} v{doc.version}", 8.5, right=True)
    c = doc.customer
    y = 34.0
    for line in [c.name or f"Account {c.account or '-'}", *c.address]:
        page.text(_LEFT, y, line, 10, bold=y == 34.0)
        y += 4.8
    box_x, box_y = 122.0, 28.0
    page.pdf.set_fill_color(238, 242, 247)
    page.pdf.rect(box_x, box_y, _RIGHT - box_x, 33, style="F")
    due = doc.statement.amount_due
    page.text(box_x + 4, box_y + 7, "Amount due", 10, bold=True)
    page.text(_RIGHT - 4, box_y + 15, money_text(max(due, Decimal(0)), doc.currency), 16, bold=True, right=True)
    page.text(box_x + 4, box_y + 22, f"Due by {day_text(doc.statement.due_date)}" if due > 0 else "Nothing to pay", 9)
    ref = f"Reference {format_reference(doc.payment_reference)}"
    size = 9.0
    page.font(size, True)
    while size > 6 and page.width(ref) > _RIGHT - box_x - 8:
        size -= 0.5
        page.font(size, True)
    page.text(box_x + 4, box_y + 28, ref, size, bold=True)
    page.y = max(y, box_y + 33) + 2


def _summary(page: _Page, doc: BillDocument) -> None:
    page.heading(title(doc))
    for label, value in summary_lines(doc):
        page.text(_LEFT, page.y, label, 8.5, bold=True)
        page.text(_LEFT + 32, page.y, value, 8.5)
        page.y += 4.4
    rows = register_rows(doc)
    if rows:
        page.y += 2
        header = ("Register", "Start read", "kWh", "End read", "kWh", "Used kWh")
        page.table(header, rows, (_LEFT, 52, 103, 110, 161, _RIGHT), (False, False, True, False, True, True))


def _chart(page: _Page, doc: BillDocument) -> None:
    u = doc.usage
    if u is None or not u.days:
        return
    height = 42.0
    page.heading("Your daily use by time-of-use period", keep=height + 16)
    top = page.y
    totals = [float(u.day_total(i)) for i in range(len(u.days))]
    peak = max(max(totals), 0.001)
    step = _nice_step(peak)
    scale = height / (step * (int(peak / step) + 1))
    base, x0, width = top + height, _LEFT + 12, _RIGHT - _LEFT - 12
    slot = width / len(u.days)
    pdf = page.pdf
    pdf.set_draw_color(200, 200, 200)
    for k in range(int(peak / step) + 2):
        y = base - k * step * scale
        if y < top - 0.01:
            break
        pdf.set_line_width(0.1)
        pdf.line(x0, y, _RIGHT, y)
        page.text(x0 - 1.5, y + 1, f"{k * step:g}", 6.5, right=True)
    pdf.set_draw_color(0, 0, 0)
    heights = [[float(v) * scale for v in row] for row in u.kwh]
    for p in range(len(u.periods)):  # one colour at a time: fewer state changes in the content stream
        pdf.set_fill_color(*PALETTE[p % len(PALETTE)])
        for i, row in enumerate(heights):
            h = row[p]
            if h > 0:
                pdf.rect(x0 + i * slot + slot * 0.15, base - sum(row[:p]) - h, slot * 0.7, h, style="F")
    every = max(1, round(len(u.days) / 10))
    for i in range(0, len(u.days), every):
        page.text(x0 + i * slot + slot / 2 - 1, base + 4, str(u.days[i].day), 6.5)
    page.text(_LEFT, top - 1.5, "kWh", 6.5)
    page.y = base + 9
    x = _LEFT
    for p, name in enumerate(u.periods):
        pdf.set_fill_color(*PALETTE[p % len(PALETTE)])
        pdf.rect(x, page.y - 2.6, 3, 3, style="F")
        label = f"{name.replace('_', ' ')}: {u.period_total(p):,.1f} kWh"
        page.text(x + 4.5, page.y, label, 8)
        x += 4.5 + page.width(page.safe(label)) + 8
    page.y += 4


def _nice_step(peak: float) -> float:
    for step in (0.5, 1, 2, 5, 10, 20, 25, 50, 100, 200, 500, 1000, 2000, 5000, 10000):
        if peak / step <= 5:
            return float(step)
    return 10.0 ** len(str(int(peak)))


def render_pdf(doc: BillDocument) -> bytes:
    """The bill document as PDF bytes (one or more A4 pages)."""
    page = _Page(doc)
    _header(page, doc)
    _summary(page, doc)
    _chart(page, doc)
    page.heading("Charges", keep=30)
    page.table(("Description", "Quantity", "Rate", "Amount"), charge_rows(doc), (_LEFT, 120, 158, _RIGHT),
               (False, True, True, True))  # fmt: skip
    page.y += 1
    page.paragraph(estimated_text(doc))
    rows = statement_rows(doc)
    page.heading("Your account", keep=6 + 4.6 * len(rows))
    page.table(("", "Amount"), rows, (_LEFT, _RIGHT), (False, True))
    plan = plan_lines(doc)
    if plan:
        page.heading("Installment plan")
        for line in plan:
            page.paragraph(line)
    page.heading("How to pay")
    for line in [*payment_lines(doc), *doc.notes]:
        page.paragraph(line, 9)
    _footer(page, doc)
    return bytes(page.pdf.output())


def _footer(page: _Page, doc: BillDocument) -> None:
    pdf: Any = page.pdf
    pages = pdf.pages_count
    for n in range(1, pages + 1):
        pdf.page = n
        page.text(_LEFT, 290, f"{doc.customer.account or doc.meter} - {doc.bill_id} - page {n} of {pages}", 7)
