"""``amiflow serve``: one supervised process running the ingest workers, poller, bridge, API and housekeeping.

:class:`Service` supervises the components of :mod:`amiflow_app.serve.components`; the command around it is
:mod:`amiflow_app.commands.serve`.
"""

from amiflow_app.serve.supervisor import COMPONENTS, Component, Service

__all__ = ["COMPONENTS", "Component", "Service"]
