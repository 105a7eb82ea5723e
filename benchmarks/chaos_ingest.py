"""The ingest half of the chaos run: two ``amiflow ingest mqtt`` workers on one shared subscription of a private
Mosquitto, writing through a TCP proxy (:class:`ingest.testing.TcpProxy`) to a private PostgreSQL, while
``amiflow sim mqtt`` publishes a fleet at QoS 1 (with duplicated and spoofed messages) and the run breaks things:

1. the database killed (``pg_ctl -m immediate``) mid-stream, and while it is down worker A killed -9 and started
   again (it must start, spool and drain later); worker B's spool is a small tmpfs that fills up meanwhile (it must
   stop acknowledging, say why, and resume);
2. the broker restarted (SIGTERM, persistence on: sessions and queued messages survive);
3. the network to the database cut (the proxy refuses and cuts every connection) for a while.

Afterwards the database must hold exactly what the simulator says a correct head-end stores: every distinct valid
reading once (``readings_expected``), every spoofed message quarantined (``messages_quarantined``), no conflicts,
except what the broker itself dropped. Mosquitto keeps no shared subscription over its restart, so a reading
published after the restart and before the first worker subscribes again is acknowledged and delivered to no one
(docs/reliability.md). A witness (:mod:`benchmarks.chaos_witness`: plain paho on a plain subscription of a
persistent session, which the broker keeps) receives every message the broker accepted, and the broker's debug log
names the messages it received in that window; the accounting compares the two with the database reading by
reading: ``published = stored + duplicates + quarantined + broker_dropped``, and a reading missing from a message
the broker did deliver (amiflow's loss) fails the run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script by `make bench`: a no-op

from amiflow.db.migrate import migrate
from benchmarks.chaos_services import Mosquitto, Postgres, Process, child_env, wait_until
from benchmarks.chaos_witness import Witness, account, dropped_by_broker
from ingest.testing import TcpProxy

__all__ = ["IngestChaos", "IngestPlan"]

PREFIX = "chaos/v1"
SIM_CLIENT_ID = "amiflow-sim"  # the fleet's connections are amiflow-sim-0, amiflow-sim-1, ... (its default)


@dataclass(frozen=True)
class IngestPlan:
    """Sizes and durations (seconds of wall time) of one run."""

    meters: int
    days: int
    stream_s: float
    db_down_s: float
    broker_down_s: float
    cut_s: float

    @classmethod
    def of(cls, quick: bool) -> IngestPlan:
        if quick:
            return cls(meters=40, days=30, stream_s=24, db_down_s=7, broker_down_s=2, cut_s=4)
        return cls(meters=200, days=60, stream_s=180, db_down_s=30, broker_down_s=5, cut_s=20)


@dataclass
class IngestChaos:
    """One run; :meth:`run` returns the counts, ``failures`` says what broke an invariant."""

    root: Path
    pg: Postgres
    broker: Mosquitto
    plan: IngestPlan
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    workers: dict[str, Process] = field(default_factory=dict)

    def _db(self) -> str:
        url = self.pg.url("chaos_ingest")
        with psycopg.connect(self.pg.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE chaos_ingest")
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO amiflow.meters (name, protocol) SELECT 'M' || lpad(g::text, 6, '0'), 'mqtt'"
                " FROM generate_series(1, %s) g",
                (self.plan.meters,),
            )
        return url

    def _spool_disk(self, data_dir: Path) -> dict[str, str]:
        """Worker B's spool on a 1 MiB tmpfs (root only); else the smallest spool bound, said so in the notes."""
        spool = data_dir / "spool"
        spool.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(spool)], capture_output=True)
        if done.returncode == 0:
            self.notes.append("spool_disk=tmpfs_1m")
            return {}
        self.notes.append("spool_disk=max_bytes_1MiB (mount not permitted)")
        return {"AMIFLOW_SPOOL_MAX_BYTES": str(1 << 20)}

    def _worker(self, name: str, db_url: str, extra: dict[str, str]) -> Process:
        data = self.root / f"worker-{name}"
        env = child_env(
            AMIFLOW_DATABASE_URL=db_url,
            AMIFLOW_MQTT_URL=self.broker.url,
            AMIFLOW_DATA_DIR=str(data),
            AMIFLOW_MQTT_SHARE_GROUP="chaos",
            AMIFLOW_MQTT_SESSION_EXPIRY_S="3600",
            AMIFLOW_INGEST_BATCH_MAX_LATENCY_S="0.1",
            **extra,
        )
        args = ["-v", "ingest", "mqtt", "--prefix", PREFIX, "--client-id", f"chaos-{name}", "--http-port", "0"]
        return Process.amiflow(f"worker-{name}", args, env, self.root / f"worker-{name}.log")

    def _simulator(self) -> Process:
        p = self.plan
        start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=p.days + 2)
        speed = p.days * 86400 / p.stream_s
        args = ["sim", "mqtt", "--meters", str(p.meters), "--start", start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "--days", str(p.days), "--speed", f"{speed:.0f}", "--per-message", "96", "--prefix", PREFIX,
                "--faults", "dup=0.02,spoof=0.01", "--seed", "7", "--window", "200",
                "--stats", str(self.root / "sim-stats.json")]  # fmt: skip
        env = child_env(AMIFLOW_MQTT_URL=self.broker.url)
        return Process.amiflow("simulator", args, env, self.root / "simulator.log")

    def _expect(self, ok: bool, failure: str) -> None:
        if not ok:
            self.failures.append(failure)

    def run(self) -> dict[str, Any]:
        p = self.plan
        url = self._db()
        proxy = TcpProxy(("127.0.0.1", self.pg.port)).start()
        via_proxy = f"postgresql://postgres@127.0.0.1:{proxy.port}/chaos_ingest"
        b_extra = self._spool_disk(self.root / "worker-B")
        self.workers = {"A": self._worker("A", via_proxy, {}), "B": self._worker("B", via_proxy, b_extra)}
        witness = Witness("127.0.0.1", self.broker.port, f"{PREFIX}/+/readings").start()
        try:
            for w in self.workers.values():
                w.start()
            for w in self.workers.values():
                self._expect(wait_until(partial(w.has, "connected to MQTT"), 30), f"{w.name} did not connect")
            sim = self._simulator().start()
            t0 = time.monotonic()
            self._outage(t0 + p.stream_s * 0.15)
            self._broker_restart(t0 + p.stream_s * 0.5)
            self._network_cut(proxy, t0 + p.stream_s * 0.7)
            self._expect(wait_until(lambda: not sim.alive, p.stream_s * 3 + 120), "the simulator did not finish")
            self._expect(sim.proc is not None and sim.proc.returncode == 0, f"simulator exit {sim.proc}")
            stats = json.loads((self.root / "sim-stats.json").read_text())
            _wait_stored(url, stats["readings_expected"], timeout_s=120, still_s=15)
            time.sleep(3)  # a late redelivery would show as an extra row or a conflict
            witness.settle()
        finally:
            witness.stop()
            codes = {n: w.stop() for n, w in self.workers.items()}
            proxy.stop()
            subprocess.run(["umount", str(self.root / "worker-B" / "spool")], capture_output=True)
        self._expect(codes == {"A": 0, "B": 0}, f"workers' exit codes on SIGTERM: {codes}")
        return self._account(url, stats, witness)

    def _outage(self, at: float) -> None:
        """Database killed; worker A killed -9 and restarted while it is down; B's spool fills; database back."""
        _sleep_until(at)
        self.pg.kill()
        down = time.monotonic()
        time.sleep(min(3.0, self.plan.db_down_s / 3))
        a = self.workers["A"]
        a.kill()
        a.start()
        started = wait_until(lambda: a.has("starting anyway: spooling"), 20)
        self._expect(started and a.alive, "worker A restarted during the outage did not start and spool")
        b = self.workers["B"]
        full = wait_until(lambda: b.has("the disk is full"), max(1.0, self.plan.db_down_s - (time.monotonic() - down)))
        self._expect(full, "worker B's spool did not fill up during the outage (or did not say so)")
        _sleep_until(down + self.plan.db_down_s)
        self.pg.start()
        self._expect(wait_until(lambda: b.has("spool accepts messages again"), 60), "worker B did not resume")
        self._expect(wait_until(lambda: a.has("spool replayed completely"), 60), "worker A did not drain its spool")

    def _broker_restart(self, at: float) -> None:
        _sleep_until(at)
        self.broker.stop()
        time.sleep(self.plan.broker_down_s)
        self.broker.start()

    def _network_cut(self, proxy: TcpProxy, at: float) -> None:
        _sleep_until(at)
        proxy.block()
        time.sleep(self.plan.cut_s)
        proxy.unblock()

    def _account(self, url: str, stats: dict[str, Any], witness: Witness) -> dict[str, Any]:
        dropped = dropped_by_broker(self.broker.log, f"{SIM_CLIENT_ID}-")
        acc = account(url, witness.messages, dropped)
        conflicts = _count(url, "SELECT count(*) FROM amiflow.reading_conflicts")
        q_rows = _count(url, "SELECT count(*) FROM amiflow.quarantine")
        q_messages = _count(url, "SELECT count(DISTINCT raw) FROM amiflow.quarantine")
        published, duplicates = stats["readings_published"], stats["readings_duplicate"]
        expected = stats["readings_expected"]
        ok = self._expect
        # the witness is the reference: it must have seen what the simulator says it published
        ok(acc.witness_valid == expected, f"the witness saw {acc.witness_valid} of {expected} distinct valid readings")
        ok(acc.spoofs == stats["messages_quarantined"], f"the witness saw {acc.spoofs} spoofed messages of"
           f" {stats['messages_quarantined']}")  # fmt: skip
        # amiflow's own accounting against it
        ok(acc.missing_unexplained == 0, f"amiflow lost {acc.missing_unexplained} readings the broker delivered")
        ok(acc.stored == expected - acc.missing, f"stored {acc.stored} = {expected} expected - {acc.missing} missing")
        ok(acc.invented == 0, f"{acc.invented} stored readings no message carried")
        ok(acc.value_mismatches == 0, f"{acc.value_mismatches} stored values differ from the published ones")
        ok(acc.spoofs_missing_unexplained == 0, f"{acc.spoofs_missing_unexplained} spoofed messages the broker"
           " delivered are not in the quarantine")  # fmt: skip
        ok(acc.quarantined_unknown == 0, f"{acc.quarantined_unknown} quarantined messages the broker never carried")
        ok(q_messages == acc.spoofs_quarantined, f"quarantined {q_messages} distinct messages, {acc.spoofs_quarantined}"
           " of them spoofed")  # fmt: skip
        ok(conflicts == 0, f"{conflicts} reading conflicts")
        quarantined = acc.quarantined_readings
        ok(published == acc.stored + duplicates + quarantined + acc.broker_dropped,
           "published != stored + duplicates + quarantined + broker_dropped")  # fmt: skip
        if acc.broker_dropped:
            self.notes.append(
                f"broker_dropped={acc.broker_dropped} readings in {acc.dropped_messages} messages Mosquitto accepted"
                " after its restart before a worker subscribed again (it keeps no shared subscription)"
            )
        return {
            "published": published,
            "stored": acc.stored,
            "duplicates": duplicates,
            "quarantined": quarantined,
            "broker_dropped": acc.broker_dropped,
            "broker_dropped_messages": acc.dropped_messages,
            "witness_messages": acc.witness_messages,
            "quarantine_rows": q_rows,
            "quarantined_messages": q_messages,
            "conflicts": conflicts,
            "messages": stats["messages"],
        }


def _count(url: str, sql: str) -> int:
    with psycopg.connect(url, connect_timeout=5) as conn:
        row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0


def _wait_stored(url: str, expected: int, *, timeout_s: float, still_s: float) -> None:
    """Until every expected reading is stored, or the count has not moved for ``still_s`` (what the broker dropped
    never arrives: no point waiting out the whole timeout), or ``timeout_s`` passed."""
    deadline, last, since = time.monotonic() + timeout_s, -1, time.monotonic()
    while time.monotonic() < deadline:
        n = _count(url, "SELECT count(*) FROM amiflow.readings")
        if n >= expected:
            return
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since >= still_s:
            return
        time.sleep(0.5)


def _sleep_until(at: float) -> None:
    time.sleep(max(0.0, at - time.monotonic()))
