"""The billing components: the outbox dispatcher and the collections job (prepaid, reminders, reconnects, relays)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Any

from amiflow.errors import ConfigError
from amiflow.settings import Settings
from amiflow_app.serve.components.threads import counters, in_thread, wait

if TYPE_CHECKING:
    from billing_bridge.dispatcher import Dispatcher

__all__ = ["BridgeComponent", "CollectionsComponent", "EbillComponent"]


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
    channel = "billing"
    missing = "the bridge needs AMIFLOW_BILLING_URL (bills stay in the outbox without it)"

    def __init__(self, settings: Settings, db_url: str) -> None:
        self._settings = settings
        self._db_url = db_url
        self._build()  # ConfigError now, not a crash loop, when the billing URL or secret is missing
        self.totals: dict[str, int] = dict.fromkeys(_BRIDGE_HELP, 0)
        self._current: Dispatcher | None = None

    def _build(self) -> Dispatcher:
        from billing_bridge import build_dispatcher

        dispatcher = build_dispatcher(self._settings, self._db_url, follow=True, channel=self.channel)
        if dispatcher is None:
            raise ConfigError(self.missing)
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
        return counters(f"amiflow_{self.name}", _BRIDGE_HELP, values)


class EbillComponent(BridgeComponent):
    """The e-bill dispatcher: the outbox's ``email`` channel to the customers over AMIFLOW_SMTP_URL (docs/bills.md)."""

    name = "ebills"
    channel = "email"
    missing = "e-bills need AMIFLOW_SMTP_URL and AMIFLOW_MAIL_FROM (they stay in the outbox without them)"


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
                await in_thread(self.run_once, "serve-collections")
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
        from billing_bridge import run_pending_commands

        outcomes: list[Any] = await run_pending_commands(conn, self._settings, mqtt_url=self._mqtt_url)
        return outcomes

    def problem(self) -> str | None:
        return None

    def prometheus(self) -> str:
        name = "amiflow_collections_last_run_timestamp_seconds"
        last = f"# HELP {name} when the last job run finished\n# TYPE {name} gauge\n{name} {self.last_run_at:.0f}\n"
        return counters("amiflow_collections", _COLLECTIONS_HELP, self.counts) + last
