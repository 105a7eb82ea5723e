"""The collection report's figures: one PNG per KPI, a line per group over the months of the history."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from billing_bridge.collection_kpis import KPI_NAMES, GroupKpis

__all__ = ["KPI_TITLES", "MAX_LINES", "kpi_figures"]

#: What each plot shows (and its unit).
KPI_TITLES = {
    "billed": "Billed (money)", "collected": "Collected (money)", "collection_rate": "Collection rate (%)",
    "arrears_0_30": "Arrears 0-30 days (money)", "arrears_31_60": "Arrears 31-60 days (money)",
    "arrears_61_90": "Arrears 61-90 days (money)", "arrears_over_90": "Arrears over 90 days (money)",
    "plans_active": "Installment plans active", "plans_kept": "Installment plans kept",
    "plans_broken": "Installment plans broken", "reminders_sent": "Reminders sent", "disconnects": "Disconnects",
    "reconnects": "Reconnects", "dso_days": "Days sales outstanding",
}  # fmt: skip
#: The most groups drawn in one plot (the largest by billed amount in the last month); the table has them all.
MAX_LINES = 8


def _value(r: GroupKpis | None, name: str) -> float:
    if r is None:
        return float("nan")
    v = getattr(r, name)
    if v is None:
        return float("nan")
    return float(v) * 100 if name == "collection_rate" else float(v) if isinstance(v, Decimal | int) else float("nan")


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def kpi_figures(history: Sequence[tuple[date, Sequence[GroupKpis]]]) -> dict[str, bytes]:
    """PNG bytes by KPI name (``kpi_<name>``); nothing without history."""
    if not history:
        return {}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    last = sorted(history[-1][1], key=lambda r: (-r.billed, r.group))
    keys = [(r.group, r.currency) for r in last][:MAX_LINES]
    months = [m.strftime("%Y-%m") for m, _ in history]
    table = [{(r.group, r.currency): r for r in rows} for _, rows in history]
    figs = {}
    for name in KPI_NAMES:
        fig, ax = plt.subplots(figsize=(5.2, 2.6))
        for i, key in enumerate(keys):
            ax.plot(months, [_value(t.get(key), name) for t in table], marker="o", ms=3, lw=1.2, color=f"C{i}",
                    label=key[0] if len({c for _, c in keys}) == 1 else f"{key[0]} ({key[1]})")  # fmt: skip
        currencies = {c for _, c in keys}
        title = KPI_TITLES[name]
        ax.set_title(title.replace("money", currencies.pop()) if len(currencies) == 1 else title, fontsize=10)
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(alpha=0.3)
        if keys:
            ax.legend(fontsize=6, loc="upper left", ncol=2)
        figs[f"kpi_{name}"] = _png(fig)
    return figs
