"""amiflow's application shell: the ``amiflow`` CLI, the ``serve`` supervisor, the demo, the report, the HTTP API
and the embedded MQTT broker.

It is the top layer: it imports the services (ingest, rating, billing_bridge, simulators), protocols and the
``amiflow`` core, and nothing imports it. ``tests/unit/test_layers.py`` keeps that true.
"""

from amiflow_app.cli import COMMANDS, main

__all__ = ["COMMANDS", "main"]
