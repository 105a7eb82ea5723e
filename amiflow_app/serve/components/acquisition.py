"""The acquisition components: the MQTT ingest worker and the polling scheduler."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from amiflow.settings import Settings
from amiflow_app.serve.components.threads import in_thread

__all__ = ["IngestComponent", "PollerComponent"]


class IngestComponent:
    """The MQTT ingest worker (its own threads); its counters survive restarts."""

    name = "ingest"

    def __init__(self, settings: Settings, db_url: str, mqtt_url: str) -> None:
        from ingest.metrics import IngestMetrics

        self._settings = settings
        self._db_url = db_url
        self._mqtt_url = mqtt_url
        self.metrics = IngestMetrics()

    async def run(self, stop: asyncio.Event) -> None:
        from ingest.mqtt_worker import IngestWorker

        worker = IngestWorker(
            self._settings,
            self._db_url,
            prefix=self._settings.mqtt_topic_prefix,
            mqtt_url=self._mqtt_url,
            metrics=self.metrics,
        )
        halt = threading.Event()
        done = in_thread(lambda: worker.run(halt), "serve-ingest")
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({done, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            halt.set()  # drain, commit, acknowledge, disconnect
            stopped.cancel()
        await done
        if not stop.is_set():
            raise RuntimeError("the ingest worker stopped by itself")

    def problem(self) -> str | None:
        ok, details = self.metrics.health()
        if ok:
            return None
        if details["spool_full"]:
            return "spool full: messages are not acknowledged"
        return "not connected to the MQTT broker"

    def prometheus(self) -> str:
        from ingest.metrics import render_metrics

        return render_metrics(self.metrics)


class PollerComponent:
    """The polling scheduler on a connection of its own (``application_name`` amiflow-serve-poller)."""

    name = "poller"

    def __init__(self, settings: Settings, db_url: str) -> None:
        from ingest.poller import PollerConfig

        self._config = PollerConfig.from_settings(settings)
        self._db_url = db_url
        self._poller: Any = None
        self.counters: dict[str, int] = {"polls": 0, "ok": 0, "failed": 0, "skipped": 0, "stored": 0}

    async def run(self, stop: asyncio.Event) -> None:
        import psycopg

        from ingest.mbus_keys import registry_sessions
        from ingest.poll_store import PollStore
        from ingest.poller import Poller

        def connect() -> psycopg.Connection[Any]:
            return psycopg.connect(self._db_url, autocommit=True, application_name="amiflow-serve-poller")

        conn = await asyncio.to_thread(connect)
        try:
            poller = Poller(PollStore(conn), self._config, session_factory=registry_sessions(self._db_url))
            poller.counters = self.counters  # one set of counters across restarts
            self._poller = poller
            await poller.run(stop)
        finally:
            await asyncio.to_thread(conn.close)

    def problem(self) -> str | None:
        return None

    def prometheus(self) -> str:
        if self._poller is not None:
            return str(self._poller.prometheus())
        return "".join(
            f"# TYPE amiflow_poller_{k}_total counter\namiflow_poller_{k}_total {v}\n" for k, v in self.counters.items()
        )
