"""The commissioning sheet: a report laid out in sections of rows (the same for the table, HTML and PDF), and the
aligned text table printed by ``amiflow commission``.

Values are shown in a display unit (energy in kWh, kvarh, kVAh with three decimals; power in W; voltage 0.1 V,
current 0.01 A, frequency 0.01 Hz, power factor 0.001) next to the base unit amiflow stores and the meter's scaling.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

from ingest.commissioning.limits import Limits
from ingest.commissioning.phases import QUANTITY_NAMES, phase_picture
from ingest.commissioning.report import CommissioningReport
from ingest.meter_quantities import Quantity

__all__ = ["Section", "display_value", "render_table", "sheet_sections"]

_DISPLAY = {"Wh": ("kWh", 1e-3, 3), "varh": ("kvarh", 1e-3, 3), "VAh": ("kVAh", 1e-3, 3)}
_WRAP = 64
_DECIMALS = {"W": 0, "var": 0, "VA": 0, "V": 1, "A": 2, "Hz": 2, "deg": 1, "": 3}


@dataclass(frozen=True, slots=True)
class Section:
    """One part of the sheet: a title, column headings (empty for label/value lists) and rows of text."""

    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: tuple[int, ...] = ()  # columns aligned right


def display_value(value: float, unit: str, *, ratio: bool = False) -> str:
    """``154452.750 kWh`` for 154452750 Wh; ``230.4 V``; ``0.970`` for a power factor."""
    if ratio:
        return f"{value:g}"
    shown, factor, decimals = _DISPLAY.get(unit, (unit, 1.0, _DECIMALS.get(unit, 3)))
    text = f"{value * factor:.{decimals}f}"
    return f"{text} {shown}" if shown else text


def _base(q: Quantity) -> str:
    number = f"{q.value:.0f}" if q.unit in _DISPLAY or q.unit in ("W", "var", "VA") else f"{q.value:g}"
    return f"{number} {q.unit}".strip()


def _quantity_rows(quantities: list[Quantity]) -> tuple[tuple[str, ...], ...]:
    rows = []
    for q in quantities:
        ratio = q.obis.startswith("1-0:0.4.")
        rows.append(
            (q.obis, QUANTITY_NAMES.get(q.obis, ""), display_value(q.value, q.unit, ratio=ratio), _base(q), q.scaling)
        )
    return tuple(rows)


def _is_register(code: str) -> bool:
    return code.split(":")[-1].split(".")[1:2] == ["8"]


def _identity(report: CommissioningReport) -> Section:
    ident = report.identity
    rows = [
        ("meter", report.meter or "(not named)"),
        ("URI", report.uri),
        ("protocol", report.protocol),
        ("serial", str(ident.get("serial") or "not reported")),
        ("manufacturer", str(ident.get("manufacturer") or "not reported")),
        ("model", str(ident.get("model") or ident.get("map") or "not reported")),
        ("firmware", str(ident.get("firmware") or "not reported")),
        ("started (UTC)", report.started_at),
        ("meter clock", report.meter_clock or "none (the meter keeps no clock)"),
        ("clock offset", "n/a" if report.clock_offset_s is None else f"{round(report.clock_offset_s, 1) + 0.0:+.1f} s"),
    ]
    return Section("Identity", (), tuple(rows))


def _phases(report: CommissioningReport, limits: Limits) -> Section | None:
    phases = phase_picture(report.values)
    if not phases:
        return None
    names = [p.name for p in phases]
    low, high = limits.voltage_range_v
    imax, _ = limits.imax_for(str(report.identity.get("model") or report.identity.get("map") or ""))

    def row(label: str, unit: str, values: list[float | None], limit: str) -> tuple[str, ...]:
        return (label, *("-" if v is None else display_value(v, unit) for v in values), limit)

    rows = [
        row("voltage", "V", [p.voltage_v for p in phases], f"{low:.1f}-{high:.1f} V"),
        row("current", "A", [p.current_a for p in phases], f"<= {imax:g} A"),
        row("active power (net)", "W", [p.power_w for p in phases], "import > 0"),
        row("power factor", "", [p.power_factor for p in phases], f">= {limits.min_power_factor:.2f}"),
        row("voltage angle", "deg", [p.voltage_angle_deg for p in phases], "0 / 120 / 240 deg"),
        row("current angle", "deg", [p.current_angle_deg for p in phases], "to its voltage"),
    ]
    kept = tuple(r for r in rows if any(cell != "-" for cell in r[1:-1]))
    return Section("Per phase", ("", *names, "range"), kept, tuple(range(1, len(names) + 1)))


def sheet_sections(report: CommissioningReport) -> list[Section]:
    """The sheet's sections in order: identity, checks, start register reads, per phase, communication, the other
    instantaneous values (each with the meter's scaling), verdict."""
    limits = Limits().with_changes(**report.limits) if report.limits else Limits()
    registers = [q for q in report.quantities if _is_register(q.obis)]
    others = [q for q in report.quantities if not _is_register(q.obis)]
    header = ("OBIS", "quantity", "value", "base", "meter scaling")
    checks = tuple((c.status.upper(), c.name, c.detail, c.limit) for c in report.checks)
    sections = [_identity(report), Section("Checks", ("result", "check", "found", "range"), checks)]
    sections.append(Section("Start register reads", header, _quantity_rows(registers), (2, 3)))
    per_phase = _phases(report, limits)
    if per_phase is not None:
        sections.append(per_phase)
    q = report.link
    latency = "n/a" if q.median_latency_s is None else f"median {q.median_latency_s * 1000:.0f} ms"
    if q.max_latency_s is not None:
        latency += f", max {q.max_latency_s * 1000:.0f} ms"
    link_rows = (
        ("attempts", str(q.attempts)),
        ("retries", str(q.retries)),
        ("failed attempts", str(q.failures)),
        ("sessions reopened", str(q.reopened)),
        ("read latency", latency),
    )
    sections.append(Section("Communication", (), link_rows))
    if others:
        sections.append(Section("Instantaneous values", header, _quantity_rows(others), (2, 3)))
    sections.append(Section("Verdict", (), (("verdict", report.verdict_line()),)))
    return sections


def _wrapped(section: Section, rows: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """Rows with long text cells wrapped into continuation rows (each column at most ``_WRAP`` wide)."""
    out: list[tuple[str, ...]] = []
    for r in rows:
        parts = [textwrap.wrap(c, _WRAP) or [""] if i not in section.numeric else [c] for i, c in enumerate(r)]
        for line in range(max(len(p) for p in parts)):
            out.append(tuple(p[line] if line < len(p) else "" for p in parts))
    return out


def _aligned(section: Section) -> list[str]:
    body = _wrapped(section, list(section.rows))
    rows = [section.header, *body] if section.header else body
    if not rows:
        return ["  (none)"]
    width = [max(len(r[i]) for r in rows if i < len(r)) for i in range(max(len(r) for r in rows))]
    lines = []
    for n, r in enumerate(rows):
        cells = [
            cell.rjust(width[i]) if i in section.numeric and (n or not section.header) else cell.ljust(width[i])
            for i, cell in enumerate(r)
        ]
        lines.append(("  " + "  ".join(cells)).rstrip())
        if n == 0 and section.header:
            lines.append("  " + "  ".join("-" * w for w in width))
    return lines


def render_table(report: CommissioningReport) -> str:
    """The sheet as aligned text (what ``amiflow commission`` prints)."""
    out = [f"COMMISSIONING SHEET  {report.meter or report.uri}", ""]
    for section in sheet_sections(report):
        out.append(section.title)
        out.extend(_aligned(section))
        out.append("")
    return "\n".join(out).rstrip() + "\n"
