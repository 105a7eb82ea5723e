"""``amiflow serve``: MQTT ingest, the poller, the outbox dispatcher, the collections job and the HTTP API in one
supervised process.

Every component runs under its own supervisor task on one asyncio event loop (in a thread of its own, so the caller
keeps its main thread for signals): the MQTT ingest worker in a dedicated thread (it owns paho's threads), the
poller, the dispatcher and uvicorn as tasks, the collections job (prepaid charges, reminders, reconnect scheduling,
pending relay commands) every minute in a worker thread. A component that raises is logged, shown as degraded in
``/health`` and restarted after a backoff (``restart_backoff_s`` doubling to 60 s, reset after 60 s of good running);
the others keep running. ``/metrics`` concatenates the Prometheus text of every component plus the supervisor's own
``amiflow_component_up`` and ``amiflow_component_restarts_total``.

Stopping (SIGTERM/SIGINT, or :meth:`Service.stop`) tells every component at once: ingest drains, commits and
acknowledges; in-flight polls, deliveries and relay commands finish; uvicorn finishes open requests. Whatever is
still running after ``stop_timeout_s`` is abandoned and the stop reports unclean (exit code 1 instead of 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from amiflow.errors import ConfigError
from amiflow.settings import Settings
from amiflow_app.serve.components import (
    ApiComponent,
    BridgeComponent,
    CollectionsComponent,
    EbillComponent,
    IngestComponent,
    PollerComponent,
    StorageComponent,
    wait,
)

__all__ = ["COMPONENTS", "Component", "Service"]

log = logging.getLogger(__name__)

COMPONENTS = ("ingest", "poller", "bridge", "ebills", "collections", "storage", "api")
_STABLE_S = 60.0  # a component that ran this long before crashing restarts after the base backoff again
_MAX_BACKOFF_S = 60.0


class Component(Protocol):
    """One supervised part of the service."""

    name: str

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set, then finish in-flight work and return; raise on failure (it is restarted)."""

    def problem(self) -> str | None:
        """None while healthy, else a short reason shown in ``/health``."""

    def prometheus(self) -> str:
        """The component's metrics in the Prometheus text format ("" for none)."""


# -- the supervisor --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _State:
    status: str = "starting"
    restarts: int = 0
    running: bool = False
    last_error: str | None = None


class Service:
    """The supervised service. ``components`` are names from :data:`COMPONENTS` (default: all of them that are
    configured) or :class:`Component` objects. ``start()`` returns once every component runs and the API accepts
    requests; ``stop()`` returns True when everything stopped within ``stop_timeout_s``.

    Without AMIFLOW_BILLING_URL the bridge is left out (bills stay in the outbox) unless named explicitly (then
    ConfigError); without AMIFLOW_MQTT_URL ingest and MQTT relay commands use an in-process broker on loopback.
    """

    def __init__(
        self,
        settings: Settings,
        components: Iterable[str | Component] | None = None,
        *,
        restart_backoff_s: float = 1.0,
        stop_timeout_s: float = 30.0,
        collections_interval_s: float = 60.0,
        storage_interval_s: float = 300.0,
    ) -> None:
        wanted = list(COMPONENTS if components is None else components)
        for c in wanted:
            if isinstance(c, str) and c not in COMPONENTS:
                raise ConfigError(f"unknown component {c!r}: choose from {', '.join(COMPONENTS)}")
        if not wanted:
            raise ConfigError("no component to run")
        self.settings = settings
        self._wanted = wanted
        self._explicit = components is not None
        self.restart_backoff_s = restart_backoff_s
        self.stop_timeout_s = stop_timeout_s
        self.collections_interval_s = collections_interval_s
        self.storage_interval_s = storage_interval_s
        self.components: list[Component] = []
        self.states: dict[str, _State] = {}
        self._api: ApiComponent | None = None
        self._db: Any = None
        self._broker: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = threading.Event()
        self._done = threading.Event()
        self._stop_requested = threading.Event()
        self._clean = True

    # -- public ------------------------------------------------------------------------------------------------------

    @property
    def has_api(self) -> bool:
        """Whether the HTTP API is one of this service's components."""
        return self._api is not None

    @property
    def url(self) -> str:
        """``http://host:port`` of the API (ConfigError when the API is not part of this service)."""
        if self._api is None:
            raise ConfigError("the API is not running in this service")
        host = self.settings.http_host
        return f"http://[{host}]:{self._api.port}" if ":" in host else f"http://{host}:{self._api.port}"

    def health(self) -> dict[str, str]:
        """Component name -> "ok", or "starting" / "degraded: why" / "stopping" / "stopped"."""
        out = {}
        for comp in self.components:
            state = self.states[comp.name]
            if state.status == "ok":
                out[comp.name] = f"degraded: {p}" if (p := comp.problem()) else "ok"
            else:
                out[comp.name] = state.status
        return out

    def notes(self) -> dict[str, str]:
        """Component name -> a warning that does not degrade the service (components with a ``note()``)."""
        out = {}
        for comp in self.components:
            note = getattr(comp, "note", None)
            if callable(note) and (text := note()):
                out[comp.name] = str(text)
        return out

    def prometheus(self) -> str:
        """The supervisor's own metrics: which components run, how often each was restarted."""
        up = "amiflow_component_up"
        restarts = "amiflow_component_restarts_total"
        lines = [f"# HELP {up} 1 while the component runs", f"# TYPE {up} gauge"]
        lines += [f'{up}{{component="{n}"}} {int(s.running)}' for n, s in self.states.items()]
        lines += [f"# HELP {restarts} restarts after a crash", f"# TYPE {restarts} counter"]
        lines += [f'{restarts}{{component="{n}"}} {s.restarts}' for n, s in self.states.items()]
        return "\n".join(lines) + "\n"

    def start(self, timeout_s: float = 60.0) -> None:
        """Open the database (migrating it), build the components and run them; ConfigError/StorageError on a
        setup failure (nothing is left running then)."""
        try:
            self._setup()
            self._thread = threading.Thread(target=self._thread_main, name="amiflow-serve", daemon=True)
            self._thread.start()
            deadline = time.monotonic() + timeout_s
            while not (self._ready.is_set() and (self._api is None or self._api.started.is_set())):
                if self._done.is_set():
                    raise ConfigError("the service failed while starting (see the log)")
                if time.monotonic() > deadline:
                    raise ConfigError(f"the service did not start within {timeout_s:g} s (see the log)")
                self._done.wait(0.02)
        except BaseException:
            self.stop()
            raise
        log.info("amiflow serve: running %s", ", ".join(c.name for c in self.components))

    def stop(self) -> bool:
        """Stop every component gracefully; True when all stopped within ``stop_timeout_s``. Idempotent."""
        self._stop_requested.set()  # seen by a loop that is only starting
        if self._loop is not None and self._stop is not None and not self._done.is_set():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(self.stop_timeout_s + 10)
            if self._thread.is_alive():
                self._clean = False
            self._thread = None
        if self._api is not None:
            self._api.close()
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._broker is not None:
            self._broker.stop()
            self._broker = None
        return self._clean

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the service has stopped (True) or ``timeout_s`` passed (False)."""
        return self._done.wait(timeout_s)

    def __enter__(self) -> Service:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- setup -------------------------------------------------------------------------------------------------------

    def _setup(self) -> None:
        from amiflow.db import open_database

        s = self.settings
        names = {c for c in self._wanted if isinstance(c, str)}
        if "bridge" in names and not s.billing_url and not self._explicit:
            log.warning("AMIFLOW_BILLING_URL is unset: the bridge does not run and bills stay in the outbox")
            names.discard("bridge")
        if "ebills" in names and s.smtp_url is None and not self._explicit:
            names.discard("ebills")  # e-bills (if any are queued) stay in the outbox until AMIFLOW_SMTP_URL is set
        mqtt_url = s.mqtt_url
        if mqtt_url is None and names & {"ingest", "collections"}:
            from amiflow_app.broker import EmbeddedBroker

            self._broker = EmbeddedBroker().start()
            mqtt_url = self._broker.url
            log.warning("AMIFLOW_MQTT_URL is unset: meters must publish to the in-process broker at %s", mqtt_url)
        self._db = open_database(s)
        url = self._db.url
        for c in self._wanted:
            if not isinstance(c, str):
                self.components.append(c)
            elif c == "ingest" and c in names:
                self.components.append(IngestComponent(s, url, mqtt_url or ""))
            elif c == "poller" and c in names:
                self.components.append(PollerComponent(s, url))
            elif c == "bridge" and c in names:
                self.components.append(BridgeComponent(s, url))
            elif c == "ebills" and c in names:
                self.components.append(EbillComponent(s, url))
            elif c == "collections" and c in names:
                self.components.append(CollectionsComponent(s, url, mqtt_url, interval_s=self.collections_interval_s))
            elif c == "storage" and c in names:
                self.components.append(StorageComponent(s, url, interval_s=self.storage_interval_s))
        if "api" in names:
            from amiflow_app.api import create_app

            sources: dict[str, Callable[[], str]] = {"supervisor": self.prometheus}
            sources.update((c.name, c.prometheus) for c in self.components)
            app = create_app(
                self._db.pool,
                metrics=sources,
                component_health=self.health,
                component_notes=self.notes,
                settings=s,
                database=self._db,
            )
            self._api = ApiComponent(app, s.http_host, s.http_port, grace_s=self.stop_timeout_s)
            self.components.append(self._api)
        self.states = {c.name: _State() for c in self.components}

    # -- the loop ----------------------------------------------------------------------------------------------------

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException:  # the supervisor's last resort: never die silently
            log.exception("amiflow serve: the supervisor loop failed")
            self._clean = False
        finally:
            self._ready.set()
            self._done.set()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        if self._stop_requested.is_set():
            self._stop.set()
        self._tasks = [asyncio.create_task(self._supervise(c), name=f"serve-{c.name}") for c in self.components]
        self._ready.set()
        await self._stop.wait()
        log.info("amiflow serve: stopping (at most %.0f s)", self.stop_timeout_s)
        for comp in self.components:
            if self.states[comp.name].running:
                self.states[comp.name].status = "stopping"
        _, pending = await asyncio.wait(self._tasks, timeout=self.stop_timeout_s)
        for task in pending:
            log.error(
                "amiflow serve: %s did not stop within %.0f s; abandoning it", task.get_name(), self.stop_timeout_s
            )
            task.cancel()
            self._clean = False
        if pending:
            await asyncio.wait(pending, timeout=2.0)

    async def _supervise(self, comp: Component) -> None:
        assert self._stop is not None
        loop = asyncio.get_running_loop()
        state = self.states[comp.name]
        delay = self.restart_backoff_s
        while not self._stop.is_set():
            started = loop.time()
            state.status, state.running = "ok", True
            try:
                await comp.run(self._stop)
                if self._stop.is_set():
                    break
                raise RuntimeError(f"{comp.name} returned while the service runs")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the supervisor: any failure of a component restarts it
                state.running = False
                if self._stop.is_set():
                    log.warning("amiflow serve: %s failed while stopping: %s", comp.name, exc)
                    break
                if loop.time() - started >= _STABLE_S:
                    delay = self.restart_backoff_s
                state.restarts += 1
                state.last_error = f"{type(exc).__name__}: {exc}".strip()
                state.status = f"degraded: crashed ({state.last_error[:200]}); restart in {delay:.0f} s"
                log.error("amiflow serve: %s crashed; restarting in %.1f s", comp.name, delay, exc_info=exc)
                if await wait(self._stop, delay):
                    break
                delay = min(delay * 2, _MAX_BACKOFF_S)
            finally:
                state.running = False
        state.status = "stopped"
