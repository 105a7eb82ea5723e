"""amiflow ingest: readings in from the meters, into PostgreSQL, with nothing lost.

Two ways in, both storing through the core's batch writer:

- pushed: :class:`IngestWorker` subscribes to MQTT (shared subscription, QoS 1), decodes and validates each batch,
  commits it in one transaction (or spools it while the database is away) and only then acknowledges it; its
  counters are :class:`IngestMetrics` (``/health`` and ``/metrics`` through :class:`MetricsServer`);
- polled: :class:`Poller` reads DLMS, IEC 62056-21 and Modbus meters on their schedule through one
  :class:`MeterSession` shape (:func:`open_session`), storing through :class:`PollStore`.

:func:`commission` (:mod:`ingest.commissioning`) identifies, test-reads and judges a new meter for its commissioning
sheet; :func:`store_report` and :func:`register_meter` keep the report and register the meter. See
docs/ingest-mqtt.md, docs/poller.md and docs/commissioning.md.
"""

from ingest.commissioning import Check, CommissioningReport, commission, register_meter, store_report
from ingest.meter_sessions import MeterSession, SessionFactory, open_session
from ingest.metrics import IngestMetrics, MetricsServer, render_metrics
from ingest.mqtt_worker import IngestWorker
from ingest.poll_store import PollStore
from ingest.poller import Poller, PollerConfig, PollOutcome, PollSummary

__all__ = [
    "Check",
    "CommissioningReport",
    "IngestMetrics",
    "IngestWorker",
    "MeterSession",
    "MetricsServer",
    "PollOutcome",
    "PollStore",
    "PollSummary",
    "Poller",
    "PollerConfig",
    "SessionFactory",
    "commission",
    "open_session",
    "register_meter",
    "render_metrics",
    "store_report",
]
