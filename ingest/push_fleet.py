"""Every registered push meter's reader as one unit: started beside the poller, refreshed from the registry, stopped
with it, counted for ``/metrics``.

:meth:`PushFleet.refresh` reads the registry (``protocol`` ``sml`` or ``p1`` with a URI, not ``inactive``): a new
meter gets a reader task, a removed one or one whose URI changed is stopped (and restarted with the new URI). Each
task is supervised: a reader that fails unexpectedly is logged with its traceback and restarted after
``backoff_max_s``; it never takes the others or the poller down. :meth:`stop` cancels the readers (a store operation
under way finishes first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from ingest.poll_store import PolledMeterRow
from ingest.push_reader import DbRunner, LinkFactory, PushConfig, PushReader, thread_runner
from ingest.push_store import PushStore

__all__ = ["PushFleet", "stop_task"]

log = logging.getLogger(__name__)

_METRICS = (
    ("readings", "readings stored from push meters"),
    ("duplicates", "push readings already stored"),
    ("quarantined", "bad push frames and readings quarantined"),
    ("skipped_bytes", "noise bytes between push frames"),
    ("sampled_out", "push readings not stored (sampling)"),
    ("connects", "push links opened"),
    ("link_failures", "push links that dropped, failed to open or went silent"),
    ("dropped_rows", "push readings dropped while the database refused writes"),
)


async def stop_task(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait for it, cancelling again should a cancellation be swallowed on the way."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)
    with contextlib.suppress(asyncio.CancelledError):
        await task


class PushFleet:
    """The readers of the registered push meters (``readers`` by meter name)."""

    def __init__(
        self,
        store: PushStore,
        config: PushConfig,
        *,
        db: DbRunner | None = None,
        clock: Callable[[], float] = time.time,
        link_factory: LinkFactory | None = None,
    ) -> None:
        self._store = store
        self.config = config
        self._db = db or thread_runner()
        self._clock = clock
        self._link_factory = link_factory
        self.readers: dict[str, PushReader] = {}
        self._rows: dict[str, PolledMeterRow] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @classmethod
    def beside(
        cls,
        poll_store: object,
        interval_s: int,
        timeout_s: float,
        offline_after: int,
        *,
        db: DbRunner,
        clock: Callable[[], float],
    ) -> PushFleet | None:
        """The fleet a poller runs on its own connection and database lock (None when its store has no database):
        the poller's interval, its timeout to open a link, its failure count before ``offline``."""
        store = PushStore.beside(poll_store)
        if store is None:
            return None
        config = PushConfig(interval_s=interval_s, connect_timeout_s=timeout_s, offline_after=offline_after)
        return cls(store, config, db=db, clock=clock)

    async def refresh(self) -> int:
        """Start readers for new push meters, stop those removed or changed; returns how many run."""
        rows: list[PolledMeterRow] = await self._db(self._store.meters)
        wanted = {r.name: r for r in rows}
        for name in list(self._tasks):
            if wanted.get(name) != self._rows[name]:
                await self._stop_one(name)
        for name, row in wanted.items():
            if name not in self._tasks:
                self._start(row)
        return sum(not t.done() for t in self._tasks.values())

    def _start(self, row: PolledMeterRow) -> None:
        reader = PushReader(row, self._store, self.config, db=self._db, clock=self._clock)
        if self._link_factory is not None:
            reader.link_factory = self._link_factory
        self.readers[row.name], self._rows[row.name] = reader, row
        self._tasks[row.name] = asyncio.create_task(self._supervise(reader), name=f"push-{row.name}")

    async def _supervise(self, reader: PushReader) -> None:
        while True:
            try:
                await reader.run()
                return  # a URI that cannot be read: recorded; restarted when the registry changes it
            except Exception:  # a bug reading one meter must not stop the others (supervisor)
                log.exception("push reader of %s failed; restarting", reader.row.name, extra={"meter": reader.row.name})
                await asyncio.sleep(self.config.backoff_max_s)

    async def _stop_one(self, name: str) -> None:
        task = self._tasks.pop(name)
        self._rows.pop(name)
        self.readers[name].request_stop()
        await stop_task(task)

    async def stop(self) -> None:
        """Stop every reader (idempotent)."""
        for name in list(self._tasks):
            await self._stop_one(name)

    def totals(self) -> dict[str, int]:
        """Counters summed over the readers."""
        out: dict[str, int] = {}
        for reader in self.readers.values():
            for key, value in reader.counters.items():
                out[key] = out.get(key, 0) + value
        return out

    def _sorted(self) -> list[tuple[str, PushReader]]:
        return sorted(self.readers.items())

    def prometheus(self) -> str:
        """Per-meter counters as Prometheus text (``amiflow_push_*``)."""
        lines = [f"# TYPE amiflow_push_meters gauge\namiflow_push_meters {len(self._tasks)}"]
        lines.append("# TYPE amiflow_push_frames_total counter")
        for name, r in sorted(self.readers.items()):
            lines.append(f'amiflow_push_frames_total{{meter="{name}",result="ok"}} {r.counters["frames_ok"]}')
            lines.append(f'amiflow_push_frames_total{{meter="{name}",result="bad"}} {r.counters["frames_bad"]}')
        lines.append("# TYPE amiflow_push_bad_frames_total counter")
        for name, r in sorted(self.readers.items()):
            lines += [
                f'amiflow_push_bad_frames_total{{meter="{name}",reason="{k}"}} {v}' for k, v in r.bad_reasons.items()
            ]
        for key, help_ in _METRICS:
            lines.append(f"# HELP amiflow_push_{key}_total {help_}\n# TYPE amiflow_push_{key}_total counter")
            lines += [
                f'amiflow_push_{key}_total{{meter="{n}"}} {r.counters[key]}' for n, r in sorted(self.readers.items())
            ]
        return "\n".join(lines) + "\n"
