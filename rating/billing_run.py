"""The billing run (what ``amiflow bill run`` and, with ``kind="vee"``, ``amiflow vee run`` do).

1. select the meters of the cycle (all meters without ``--cycle``): active meters are due; others are recorded as
   skipped (``inactive``, ``unverified``);
2. plan blocks of at most ``billing_block_meters`` meters of one tariff and time zone, stored with the run;
3. per block (a picklable task, run in this process, in local worker processes, or on a Dask cluster): read the
   month plus ``history_weeks`` of history with the foundation reader, run VEE, rate with the engine, and write
   bills, lines, determinants, VEE pre/post intervals, skipped meters and outbox rows in ONE transaction; in this
   process the stages overlap across blocks (block k+1 is read and block k-1 written while block k is rated: the
   database works on its own core meanwhile), each stage on its own connection;
4. sum up the blocks: meters billed, skipped by reason, estimated share, totals, time per phase (the summary).

Idempotent: a bill whose content did not change is not written again and nothing is queued; a changed bill (e.g.
after corrected readings) becomes version n + 1 with outbox key ``bill:<bill_id>:v<n+1>``. Resumable: a run that
did not finish is resumed by the next run of the same period and cycle, skipping its committed blocks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from multiprocessing import get_context
from typing import Any, TypeVar

import psycopg

from amiflow.errors import ConfigError, StorageError
from rating.block_task import BlockTask, compute_block, read_block, run_block, write_block
from rating.run_store import BlockPlan, block_summaries, finish_run, open_run, plan_blocks, select_meters, store_skips
from rating.vee import VeeConfig

__all__ = ["RunOptions", "RunResult", "parse_period", "run_billing"]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RunOptions:
    """Parameters of a billing (``kind="bill"``) or VEE-only (``kind="vee"``) run."""

    period: date  # first day of the month
    kind: str = "bill"
    cycle: str | None = None  # None = every meter
    cycles: int = 20  # hash-based cycles for meters without an amiflow.meter_cycles row
    block_meters: int = 2000
    history_weeks: int = 4
    max_estimated_share: float = 0.5
    workers: int = 0  # local worker processes; 0 = in this process
    dask: str | None = None  # scheduler address: blocks go to the Dask cluster
    vee: VeeConfig = field(default_factory=VeeConfig)
    progress: bool = True


@dataclass(frozen=True, slots=True)
class RunResult:
    """What a run did (also stored as amiflow.bill_runs.summary)."""

    run_id: int
    resumed: bool
    summary: dict[str, Any]


def parse_period(text: str) -> date:
    """``YYYY-MM`` -> the first day of that month; ConfigError otherwise."""
    try:
        year, month = text.split("-")
        return date(int(year), int(month), 1)
    except ValueError:
        raise ConfigError(f"--period {text!r}: expected YYYY-MM, e.g. 2026-10") from None


def _plan(conn: psycopg.Connection[Any], opts: RunOptions) -> tuple[list[BlockPlan], list[tuple[str, str, str | None]]]:
    meters = select_meters(conn, opts.cycle, opts.cycles)
    due = [m for m in meters if m.status == "active"]
    skips: list[tuple[str, str, str | None]] = [
        (m.name, m.status, "only active meters are billed") for m in meters if m.status != "active"
    ]
    return plan_blocks(due, opts.block_meters), skips


def _execute(tasks: list[BlockTask], opts: RunOptions) -> Iterator[dict[str, Any]]:
    """Run the tasks where the options say; yield each block's summary as it completes."""
    if opts.dask:
        yield from _execute_dask(tasks, opts.dask)
    elif opts.workers > 0 and len(tasks) > 1:
        with ProcessPoolExecutor(max_workers=min(opts.workers, len(tasks)), mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(run_block, t) for t in tasks]
            try:
                for fut in as_completed(futures):
                    yield fut.result()
            finally:
                for fut in futures:
                    fut.cancel()
    elif tasks:
        yield from _pipeline(tasks)


def _pipeline(tasks: list[BlockTask]) -> Iterator[dict[str, Any]]:
    """Run the blocks in this process with read, compute and write overlapped: while block k is rated here, block
    k+1 is read and block k-1 written on two threads with a connection each (libpq and numpy release the GIL, so
    the database's core and this one both work). Summaries come in block order; after a block's summary is taken,
    the next write starts, so a consumer that stops (a crash, a fault injected after a block) leaves exactly the
    blocks it has seen committed."""
    url = tasks[0].url
    with (
        psycopg.connect(url, autocommit=True, application_name="amiflow-billing-read") as rconn,
        psycopg.connect(url, autocommit=True, application_name="amiflow-billing-write") as wconn,
        ThreadPoolExecutor(2, thread_name_prefix="amiflow-billing") as pool,
    ):
        reading = pool.submit(read_block, rconn, tasks[0])
        writing: tuple[int, Future[dict[str, Any]]] | None = None
        for k, task in enumerate(tasks):
            inp = _result(reading, task.plan.block_no)
            if k + 1 < len(tasks):
                reading = pool.submit(read_block, rconn, tasks[k + 1])
            out = compute_block(task, inp) if inp is not None else None
            if writing is not None:
                yield _result(writing[1], writing[0])
                writing = None
            if out is None:
                yield {"block": task.plan.block_no, "skipped_block": True}
            else:
                writing = (task.plan.block_no, pool.submit(write_block, wconn, task, out))
        if writing is not None:
            yield _result(writing[1], writing[0])


def _result(future: Future[T], block_no: int) -> T:
    try:
        return future.result()
    except psycopg.Error as exc:
        raise StorageError(f"billing block {block_no} failed: {str(exc).strip()}") from exc


def _execute_dask(tasks: list[BlockTask], address: str) -> Iterator[dict[str, Any]]:
    try:
        from distributed import Client
        from distributed import as_completed as dask_completed
    except ImportError:
        raise ConfigError("--dask needs dask.distributed: pip install 'amiflow[dask]'") from None
    try:
        client = Client(address, timeout=10)  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError) as exc:
        raise ConfigError(f"--dask {address}: cannot reach the scheduler ({exc})") from exc
    try:
        futures = client.map(run_block, tasks, pure=False)
        for fut in dask_completed(futures):  # type: ignore[no-untyped-call]
            yield fut.result()
    finally:
        client.close()  # type: ignore[no-untyped-call]


def _aggregate(blocks: Sequence[dict[str, Any]], pre_skips: dict[str, int], seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {"blocks": len(blocks), "meters_billed": 0, "skipped": dict(pre_skips)}
    bills = {"new": 0, "revised": 0, "unchanged": 0}
    totals: dict[str, Decimal] = {}
    phase = {"read": 0.0, "vee": 0.0, "rate": 0.0, "write": 0.0}
    est = ivs = validated = holds = est_all = ivs_all = 0
    for b in blocks:
        out["meters_billed"] += b.get("billed", 0)
        validated += b.get("validated", 0)
        holds += b.get("holds", 0)
        for k, v in b.get("skipped", {}).items():
            out["skipped"][k] = out["skipped"].get(k, 0) + v
        for k, v in b.get("bills", {}).items():
            bills[k] += v
        for cur, v in b.get("totals", {}).items():
            totals[cur] = totals.get(cur, Decimal(0)) + Decimal(v)
        for k, v in b.get("seconds", {}).items():
            phase[k] += v
        est += b.get("estimated_intervals", 0)
        ivs += b.get("intervals", 0)
        est_all += b.get("estimated_all", 0)
        ivs_all += b.get("intervals_all", 0)
    out.update(
        meters_validated=validated,
        vee_holds=holds,
        bills=bills,
        estimated_share=round(est / ivs, 6) if ivs else 0.0,
        estimated_intervals=est,
        validated_estimated_share=round(est_all / ivs_all, 6) if ivs_all else 0.0,
        totals={k: str(v) for k, v in sorted(totals.items())},
        seconds=dict(phase, wall=seconds),
    )
    return out


def run_billing(
    url: str, opts: RunOptions, *, after_block: Callable[[dict[str, Any]], None] | None = None
) -> RunResult:
    """Run (or resume) the billing run of ``opts.period`` against the database at ``url``.

    ``after_block`` is called in this process after each block committed (tests inject faults there).
    """
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        plan, pre = _plan(conn, opts)
        cycle = opts.cycle or "*"
        params = {"cycles": opts.cycles, "block_meters": opts.block_meters, "history_weeks": opts.history_weeks,
                  "max_estimated_share": opts.max_estimated_share}  # fmt: skip
        run_id, plan, resumed = open_run(
            conn, kind=opts.kind, period=opts.period, cycle=cycle, plan=plan, params=params
        )
        if not resumed:
            with conn.transaction():
                store_skips(conn, run_id, pre)
        if resumed:
            log.info("resuming run %s: %s of %s blocks already committed", run_id, sum(b.done for b in plan), len(plan))
        tasks = [
            BlockTask(url, run_id, opts.kind, b, opts.period, opts.history_weeks, opts.max_estimated_share, opts.vee)
            for b in plan
            if not b.done
        ]
        pre_counts = _pre_skip_counts(conn, run_id)
        finished = False
        try:
            bar = _progress(len(plan), sum(b.done for b in plan), opts)
            for summary in _execute(tasks, opts):
                bar.update(1)
                if after_block is not None:
                    after_block(summary)
            bar.close()
            finished = True
        finally:
            blocks = block_summaries(conn, run_id)
            summary = _aggregate(blocks, pre_counts, time.perf_counter() - started)
            summary.update(
                run_id=run_id, kind=opts.kind, period=opts.period.isoformat()[:7], cycle=cycle, resumed=resumed
            )
            finish_run(conn, run_id, summary, "done" if finished else "failed")
    return RunResult(run_id, resumed, summary)


def _pre_skip_counts(conn: psycopg.Connection[Any], run_id: int) -> dict[str, int]:
    rows = conn.execute(
        "SELECT reason, count(*) FROM amiflow.bill_run_skips WHERE run_id = %s AND reason IN ('inactive', 'unverified')"
        " GROUP BY reason",
        (run_id,),
    ).fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, done: int, opts: RunOptions) -> Any:
    if not opts.progress:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=done, unit="block", desc=f"{opts.kind} {opts.period:%Y-%m}", disable=None)
