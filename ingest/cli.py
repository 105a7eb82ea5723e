"""``amiflow ingest mqtt``: one MQTT ingest worker (run several with distinct client ids: they share the stream)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from typing import Any

from amiflow.db import open_database
from amiflow.settings import Settings
from amiflow_app.command import Command
from ingest.metrics import MetricsServer
from ingest.mqtt_worker import IngestWorker

__all__ = ["INGEST_MQTT"]

log = logging.getLogger(__name__)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--client-id", help="MQTT client id (default AMIFLOW_MQTT_CLIENT_ID); unique per worker")
    p.add_argument("--prefix", help="topic prefix (default AMIFLOW_MQTT_TOPIC_PREFIX, ami/v1)")
    p.add_argument("--http-port", type=int, help="port of /health and /metrics (default AMIFLOW_HTTP_PORT); 0 = none")


def _run(args: argparse.Namespace, settings: Settings) -> int:
    changes: dict[str, Any] = {}
    if args.client_id:
        changes["mqtt_client_id"] = args.client_id
    if args.http_port is not None:
        changes["http_port"] = args.http_port
    if changes:
        settings = settings.model_copy(update=changes)
    db = open_database(settings)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        log.info("signal %d: draining, committing, acknowledging, disconnecting", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    worker = IngestWorker(settings, db.url, prefix=args.prefix or settings.mqtt_topic_prefix)
    server = None
    if settings.http_port:
        server = MetricsServer(worker.metrics, settings.http_host, settings.http_port)
        server.start()
    try:
        worker.run(stop)
    finally:
        if server is not None:
            server.stop()
        db.close()
    return 0


INGEST_MQTT = Command("run one MQTT ingest worker (several share the stream)", _add_arguments, _run)
