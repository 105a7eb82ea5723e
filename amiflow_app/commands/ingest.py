"""TEMPORARY re-export while the ingest commands move here (issue 11)."""

from ingest.cli import INGEST_MQTT
from ingest.commission import COMMISSION
from ingest.poller import POLL

__all__ = ["COMMISSION", "INGEST_MQTT", "POLL"]
