"""The components ``amiflow serve`` supervises (see :mod:`amiflow_app.serve.supervisor`): each has ``run(stop)``,
``problem()`` and ``prometheus()``. Heavy imports happen inside, so ``--only api`` loads neither paho nor the poller."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from amiflow.errors import ConfigError
from amiflow.settings import Settings

if TYPE_CHECKING:
    import psycopg

    from billing_bridge.dispatcher import Dispatcher

__all__ = ["ApiComponent", "BridgeComponent", "CollectionsComponent", "IngestComponent", "PollerComponent", "wait"]


async def wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` or until ``stop``; True when stopped."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max(seconds, 0.0))
    return stop.is_set()


def _in_thread(fn: Callable[[], Any], name: str) -> asyncio.Future[Any]:
    """Run ``fn`` in a new daemon thread; the future resolves with its result or exception (on the calling loop)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, exc: BaseException | None) -> None:
        if future.done():
            return
        if exc is None:
            future.set_result(result)
        else:
            future.set_exception(exc)

    def target() -> None:
        try:
            result = fn()
        except BaseException as exc:  # handed to the supervisor through the future
            with contextlib.suppress(RuntimeError):  # the loop is already closed: nobody is waiting any more
                loop.call_soon_threadsafe(settle, None, exc)
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=target, name=name, daemon=True).start()
    return future


def _counters(prefix: str, help_by_name: dict[str, str], values: dict[str, int]) -> str:
    out = []
    for key, help_ in help_by_name.items():
        name = f"{prefix}_{key}_total"
        out.append(f"# HELP {name} {help_}\n# TYPE {name} counter\n{name} {values.get(key, 0)}\n")
    return "".join(out)


# -- components ------------------------------------------------------------------------------------------------------


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
        done = _in_thread(lambda: worker.run(halt), "serve-ingest")
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

        from ingest.poll_store import PollStore
        from ingest.poller import Poller

        def connect() -> psycopg.Connection[Any]:
            return psycopg.connect(self._db_url, autocommit=True, application_name="amiflow-serve-poller")

        conn = await asyncio.to_thread(connect)
        try:
            poller = Poller(PollStore(conn), self._config)
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


_BRIDGE_HELP = {
    "claimed": "outbox items claimed for delivery",
    "delivered": "outbox items delivered",
    "rejected": "outbox items rejected by the billing system (kept for an operator)",
    "retried": "failed delivery attempts, retried later",
    "not_sent": "claimed items released unsent (lease too short to send)",
    "lost_leases": "items whose lease expired before their outcome was settled",
}


class BridgeComponent:
    """The outbox dispatcher in follow mode (LISTEN amiflow_outbox); its counts add up across restarts."""

    name = "bridge"

    def __init__(self, settings: Settings, db_url: str) -> None:
        self._settings = settings
        self._db_url = db_url
        self._build()  # ConfigError now, not a crash loop, when the billing URL or secret is missing
        self.totals: dict[str, int] = dict.fromkeys(_BRIDGE_HELP, 0)
        self._current: Dispatcher | None = None

    def _build(self) -> Dispatcher:
        from billing_bridge import build_dispatcher

        dispatcher = build_dispatcher(self._settings, self._db_url, follow=True)
        if dispatcher is None:
            raise ConfigError("the bridge needs AMIFLOW_BILLING_URL (bills stay in the outbox without it)")
        return dispatcher

    async def run(self, stop: asyncio.Event) -> None:
        dispatcher = self._build()
        self._current = dispatcher
        stopped = asyncio.ensure_future(stop.wait())
        stopped.add_done_callback(lambda _: dispatcher.stop())
        try:
            await dispatcher.run()
        finally:
            stopped.cancel()
            self._current = None
            for key in self.totals:
                self.totals[key] += getattr(dispatcher.stats, key)
        if not stop.is_set():
            raise RuntimeError("the dispatcher stopped by itself")

    def problem(self) -> str | None:
        return None

    def prometheus(self) -> str:
        values = dict(self.totals)
        if self._current is not None:
            for key in values:
                values[key] += getattr(self._current.stats, key)
        return _counters("amiflow_bridge", _BRIDGE_HELP, values)


_COLLECTIONS_HELP = {
    "runs": "collections job runs completed",
    "prepaid_updates": "prepaid accounts charged",
    "notices": "reminder and notice rungs queued",
    "reconnects_scheduled": "reconnects scheduled for accounts that cleared their arrears",
    "commands_confirmed": "relay commands confirmed by reading the relay back",
    "commands_escalated": "relay commands escalated after every attempt failed",
    "commands_failed": "relay commands that could not be sent",
}


class CollectionsComponent:
    """Every ``interval_s``: charge prepaid accounts, queue due reminders, schedule reconnects for accounts that
    paid, and send pending relay commands (so a payment that clears arrears reconnects within
    ``reconnect_within_s``). Disconnects are only planned by ``amiflow disconnect run``; this job executes those
    left pending. Runs under the disconnect-run advisory lock, in a worker thread."""

    name = "collections"

    def __init__(self, settings: Settings, db_url: str, mqtt_url: str | None, *, interval_s: float = 60.0) -> None:
        from billing_bridge.policy import load_ruleset

        self._settings = settings
        self._db_url = db_url
        self._mqtt_url = mqtt_url
        self._ruleset = load_ruleset(settings.disconnect_ruleset)
        self._interval_s = interval_s
        self.counts: dict[str, int] = dict.fromkeys(_COLLECTIONS_HELP, 0)
        self.last_run_at = 0.0
        self._halt = threading.Event()

    async def run(self, stop: asyncio.Event) -> None:
        self._halt.clear()
        watch = asyncio.ensure_future(stop.wait())
        watch.add_done_callback(lambda _: self._halt.set())  # a run in progress sends no further relay commands
        try:
            while not stop.is_set():
                await _in_thread(self.run_once, "serve-collections")
                if await wait(stop, self._interval_s):
                    return
        finally:
            watch.cancel()

    def run_once(self) -> None:
        """One pass of the job (blocking; relay commands run on a private event loop)."""
        from datetime import UTC, datetime

        import psycopg

        from billing_bridge import exclusive, schedule_reconnects, send_reminders, update_prepaid

        rs = self._ruleset
        with (
            psycopg.connect(self._db_url, autocommit=True, application_name="amiflow-serve-collections") as conn,
            exclusive(conn),
        ):
            now = datetime.now(UTC)
            self.counts["prepaid_updates"] += len(update_prepaid(conn, rs, now=now))
            self.counts["notices"] += len(send_reminders(conn, rs, now=now))
            within_s = self._settings.reconnect_within_s
            self.counts["reconnects_scheduled"] += len(schedule_reconnects(conn, rs, now=now, within_s=within_s))
            pending = conn.execute(
                "SELECT count(*) FROM amiflow.meter_commands WHERE state IN ('pending', 'sent')"
            ).fetchone()
            if pending and pending[0] and not self._halt.is_set():
                for outcome in asyncio.run(self._commands(conn)):
                    key = f"commands_{outcome.state}"
                    if key in self.counts:
                        self.counts[key] += 1
        self.counts["runs"] += 1
        self.last_run_at = time.time()

    async def _commands(self, conn: Any) -> list[Any]:
        from billing_bridge import DlmsRelayDriver, ModbusRelayDriver, MqttRelayDriver, RelayDriver, run_commands

        s = self._settings
        password = s.dlms_password.get_secret_value().encode() if s.dlms_password else None
        drivers: dict[str, RelayDriver] = {"dlms": DlmsRelayDriver(password=password), "modbus": ModbusRelayDriver()}
        async with contextlib.AsyncExitStack() as stack:
            if self._mqtt_url:
                mqtt = MqttRelayDriver(self._mqtt_url, prefix=s.mqtt_topic_prefix)
                drivers["mqtt"] = await stack.enter_async_context(mqtt)
            outcomes: list[Any] = await run_commands(
                conn, drivers, attempts=s.command_attempts, retry_delay_s=s.command_retry_s
            )
            return outcomes

    def problem(self) -> str | None:
        return None

    def prometheus(self) -> str:
        name = "amiflow_collections_last_run_timestamp_seconds"
        last = f"# HELP {name} when the last job run finished\n# TYPE {name} gauge\n{name} {self.last_run_at:.0f}\n"
        return _counters("amiflow_collections", _COLLECTIONS_HELP, self.counts) + last


class ApiComponent:
    """uvicorn serving the FastAPI app on a socket bound before start (so a taken port fails at once)."""

    name = "api"

    def __init__(self, app: Any, host: str, port: int, *, grace_s: float) -> None:
        self._app = app
        self._host = host
        self._grace_s = grace_s
        self._sock: socket.socket | None = self._bind(port)
        self.port: int = self._sock.getsockname()[1]
        self.started = threading.Event()

    def _bind(self, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self._host, port))
        except OSError as exc:
            sock.close()
            raise ConfigError(
                f"AMIFLOW_HTTP_HOST/PORT {self._host}:{port}: cannot listen ({exc.strerror}); choose another port"
            ) from exc
        sock.listen(128)
        sock.set_inheritable(True)
        return sock

    async def run(self, stop: asyncio.Event) -> None:
        import uvicorn

        sock = self._sock if self._sock is not None else self._bind(self.port)
        self._sock = None  # uvicorn closes it on shutdown: a restart binds the same port again
        config = uvicorn.Config(
            self._app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=max(1, int(self._grace_s)),
        )
        server = uvicorn.Server(config)
        stopped = asyncio.ensure_future(stop.wait())
        stopped.add_done_callback(lambda _: setattr(server, "should_exit", True))
        watch = asyncio.ensure_future(self._watch_started(server))
        try:
            await server.serve(sockets=[sock])
        except SystemExit as exc:  # uvicorn exits the process on a startup failure: make it a restartable crash
            raise RuntimeError(f"the HTTP server failed to start (exit {exc.code})") from exc
        finally:
            stopped.cancel()
            watch.cancel()
            sock.close()
        if not stop.is_set():
            raise RuntimeError("the HTTP server stopped by itself")

    async def _watch_started(self, server: Any) -> None:
        while not server.started:
            await asyncio.sleep(0.02)
        self.started.set()

    def problem(self) -> str | None:
        return None

    def prometheus(self) -> str:
        return ""

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
