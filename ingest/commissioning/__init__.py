"""Commissioning a meter: the sheet a field engineer files (``amiflow commission URI``).

- :func:`commission` (:mod:`.run`): connect, identify, read twice, check the clock, read the relay back, judge;
- the pure checks: :mod:`.checks` (identity, clock, monotonic registers, link, and :func:`plausibility`, every value
  check at once), :mod:`.supply` (voltage, frequency, power factor, current, power), :mod:`.wiring` (phase sequence,
  direction per phase, CT/VT ratio, relay); the ranges are :class:`Limits` (:mod:`.limits`, TOML profiles);
- :class:`CommissioningReport` (:mod:`.report`) with its verdict; :mod:`.sheet` the sheet's sections and the text
  table, :mod:`.export` HTML and PDF; :mod:`.link` the timed, retried reads; :mod:`.store` the database side.

See docs/commissioning.md.
"""

from ingest.commissioning.checks import plausibility
from ingest.commissioning.export import render_html, render_pdf
from ingest.commissioning.limits import Limits, load_limits, parse_ratio
from ingest.commissioning.report import Check, CommissioningReport, LinkQuality
from ingest.commissioning.run import commission
from ingest.commissioning.sheet import render_table
from ingest.commissioning.store import register_meter, store_report

__all__ = [
    "Check",
    "CommissioningReport",
    "Limits",
    "LinkQuality",
    "commission",
    "load_limits",
    "parse_ratio",
    "plausibility",
    "register_meter",
    "render_html",
    "render_pdf",
    "render_table",
    "store_report",
]
