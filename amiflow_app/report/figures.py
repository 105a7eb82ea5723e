"""The report's PNG figures (matplotlib, Agg backend): fleet health, quarantine, load curve, disconnect decisions."""

from __future__ import annotations

import io
from typing import Any

from amiflow_app.report.model import ReportData

__all__ = ["figures"]

#: Marker per VEE label kind, so that no marker hides another at the same interval: estimated ones are drawn last,
#: large and hollow, around whatever rule flagged the interval.
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_COLOURS = {"allowed": "#3bd87d", "blocked": "#d83b3b", "not yet": "#9a9a9a"}


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def figures(data: ReportData) -> dict[str, bytes]:
    """PNG bytes by figure name; a figure without data is left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs: dict[str, bytes] = {}
    fig, ax = plt.subplots(figsize=(7, 3))
    names = [p[0] for p in data.protocols]
    x = list(range(len(names)))
    polled = [(p[3] / p[2] * 100) if p[2] and p[3] is not None else float("nan") for p in data.protocols]
    complete = [data.completeness.get(n, 0.0) * 100 for n in names]
    ax.bar([i - 0.2 for i in x], polled, width=0.4, color="#3b7dd8", label="successful polls (polled meters)")
    ax.bar([i + 0.2 for i in x], complete, width=0.4, color="#8fb8ea", label="intervals received")
    ax.set_xticks(x, names)
    ax.set_ylim(0, 105)
    ax.set_ylabel("%")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("Read success per protocol")
    figs["fleet_health"] = _png(fig)
    fig, ax = plt.subplots(figsize=(6, 3))
    reasons = data.quarantine[:10] or [("none", 0)]
    ax.barh([r[0] for r in reasons], [r[1] for r in reasons], color="#d83b3b")
    ax.set_xlabel("payloads")
    ax.set_title("Quarantined payloads by reason")
    figs["quarantine"] = _png(fig)
    if data.curve:
        figs["load_curve"] = _load_curve(plt, data)
    if data.decisions:
        fig, ax = plt.subplots(figsize=(6, 0.6 + 0.3 * len(data.decisions)))
        ax.barh(
            [f"{rule} ({outcome})" for rule, outcome, _ in data.decisions],
            [n for _, _, n in data.decisions],
            color=[_COLOURS[outcome] for _, outcome, _ in data.decisions],
        )
        ax.invert_yaxis()
        ax.set_xlabel("daily evaluations")
        ax.set_title("Disconnect decisions: allowed, blocked by rule, not yet due")
        figs["disconnects"] = _png(fig)
    return figs


def _load_curve(plt: Any, data: ReportData) -> bytes:
    fig, ax = plt.subplots(figsize=(10, 3.5))
    ts: Any = [c[0] for c in data.curve]
    ax.plot(ts, [c[1] / 1000 for c in data.curve], lw=0.8, color="#333")
    flagged = [(t, v / 1000, q) for t, v, q in data.curve if q]
    kinds = sorted({f for _, _, q in flagged for f in q}, key=lambda k: (k.startswith("estimated"), k))
    for i, kind in enumerate(kinds):
        pts: Any = [(t, v) for t, v, q in flagged if kind in q]
        estimated = kind.startswith("estimated")
        ax.scatter(
            [p[0] for p in pts],
            [p[1] for p in pts],
            s=60 if estimated else 14,
            marker=_MARKERS[i % len(_MARKERS)],
            facecolors="none" if estimated else None,
            edgecolors=f"C{i}" if estimated else None,
            color=None if estimated else f"C{i}",
            label=f"{kind} ({len(pts)})",
            zorder=4 if estimated else 3,
        )
    if kinds:
        ax.legend(fontsize=7, loc="upper right")
    ax.set_ylabel("kWh per 15 min")
    ax.set_title(f"Load curve of {data.meter} with VEE flags")
    fig.autofmt_xdate()
    return _png(fig)
