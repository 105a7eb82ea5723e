"""The live operations dashboard of ``amiflow serve`` (``/dashboard``): readings per minute, quarantine by reason,
silent meters, bills issued, payments today, arrears by age band, disconnects pending and blocked with the rule,
updating live over a WebSocket. See docs/dashboard.md.

::

    app.include_router(create_dashboard_router(settings, pool))   # pool: autocommit connections
    FigureSource(pool, load_ruleset("us_tx")).gather()             # the same figures, once, as a Figures model
"""

from amiflow_app.dashboard.access import Access
from amiflow_app.dashboard.live import FigureHub
from amiflow_app.dashboard.model import Figures
from amiflow_app.dashboard.operations import FigureOptions
from amiflow_app.dashboard.routes import create_dashboard_router
from amiflow_app.dashboard.source import FigureSource

__all__ = ["Access", "FigureHub", "FigureOptions", "FigureSource", "Figures", "create_dashboard_router"]
