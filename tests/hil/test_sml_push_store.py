"""SML push meters end to end: simulated meters on a pty and on TCP (with bit errors, garbage and truncation), and
one started as ``amiflow sim sml``, read by the poller's push readers into PostgreSQL; every injected fault is a
counted, quarantined bad frame or skipped noise, and no good file is lost. The same for a DSMR P1 meter behind a
TCP serial server (telegrams from protocols.p1.build, with the same kinds of faults)."""

from __future__ import annotations

import asyncio
import os
import random
import re
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from amiflow.db.registry import MeterRecord, add_meter
from ingest.poll_store import PollStore
from ingest.poller import Poller, PollerConfig
from ingest.push_fleet import PushFleet
from ingest.push_reader import PushConfig, PushReader
from ingest.push_store import PushStore
from protocols.p1 import dsmr5_telegram
from simulators.sml_meter import SmlSimulator

pytestmark = pytest.mark.timeout(120)

FAST = (0.005, 0.02)
FAULTS = ["bit_error", "garbage", "truncate"]
SIM_SML = "sim sml --listen tcp://127.0.0.1:0 --profile itron --meter-index 6 --interval 0.01,0.03"
EVERY_FRAME = PushConfig(sample_s=0, backoff_base_s=0.05, backoff_max_s=0.2, silence_s=5.0)


async def _until(cond: Callable[[], bool], timeout_s: float = 30.0) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if cond():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached in time")


def _scalar(conn: psycopg.Connection[Any], sql: str, *params: Any) -> Any:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def _register(conn: psycopg.Connection[Any], name: str, protocol: str, uri: str) -> None:
    add_meter(conn, MeterRecord(name=name, protocol=protocol, uri=uri, tariff="residential", account=f"A-{name}"))


def _check_stored(conn: psycopg.Connection[Any], reader: PushReader) -> None:
    """Every reading of every good frame is stored (or a duplicate of one stored in the same second), every bad
    frame is quarantined under the meter with its bytes, and the counters say so."""
    c, name = reader.counters, reader.row.name
    stored = _scalar(conn, "SELECT count(*) FROM amiflow.v_readings WHERE meter = %s", name)
    assert stored == c["readings"] > 0 and c["sampled_out"] == 0
    bad = conn.execute(
        "SELECT reason, count(*), min(length(raw)) FROM amiflow.quarantine WHERE meter = %s GROUP BY 1", (name,)
    ).fetchall()
    assert {r: n for r, n, _ in bad} == reader.bad_reasons
    assert all(shortest > 0 for _, _, shortest in bad)
    assert sum(reader.bad_reasons.values()) == c["frames_bad"] == c["quarantined"]


@pytest.mark.parametrize("link", ["pty", "tcp"])
async def test_sml_meter_with_faults_is_read_into_postgres(link: str, db_conn: psycopg.Connection[Any]) -> None:
    listen = "pty" if link == "pty" else "tcp://127.0.0.1:0"
    sim = SmlSimulator(listen, profile="ehz", seed=4, meter_index=2, interval_s=FAST, faults=FAULTS, fault_rate=0.3)
    async with sim:
        name = sim.meter.meter_id.replace(" ", "")
        _register(db_conn, name, "sml", sim.uri)
        fleet = PushFleet(PushStore(db_conn), EVERY_FRAME)
        assert await fleet.refresh() == 1
        reader = fleet.readers[name]
        await _until(lambda: reader.frames_seen > 0)
        # a pty holds what the meter pushed before anyone read it: count from the reader's first frame on
        before = (sim.meter.pushes, dict(sim.meter.faults_injected), reader.frames_seen)
        await _until(lambda: reader.counters["frames_ok"] >= 60 and set(reader.bad_reasons) >= {"bad_crc"})
    # the meter went away: the reader has read what it sent to the end of the link
    await _until(lambda: reader.counters["link_failures"] >= 1)
    await fleet.stop()
    c = reader.counters
    _check_stored(db_conn, reader)
    if link == "tcp":  # every push is accounted for
        pushes, injected, seen = sim.meter.pushes, sim.meter.faults_injected, reader.frames_seen
        slack = 1  # a cut that ends inside an escape sequence can take the next start with it
    else:  # a pty loses what it held when the meter side closed
        pushes, seen = sim.meter.pushes - before[0], reader.frames_seen - before[2]
        injected = {k: v - before[1].get(k, 0) for k, v in sim.meter.faults_injected.items()}
        slack = 4
    # each clean or noise-prefixed push is one good frame; a flipped bit or a cut one bad frame (a cut is noticed
    # at the next start, or at the end of the link)
    assert pushes - slack <= seen <= pushes + injected.get("bit_error", 0)
    good = pushes - injected.get("bit_error", 0) - injected.get("truncate", 0)
    assert c["frames_ok"] >= good - slack
    assert set(reader.bad_reasons) <= {"bad_crc", "truncated", "bad_escape", "bad_padding", "bad_message"}
    assert c["skipped_bytes"] > 0 and injected.get("garbage", 0) > 0
    values = db_conn.execute(
        "SELECT value FROM amiflow.v_readings WHERE meter = %s AND obis = '1-0:1.8.0' ORDER BY ts", (name,)
    ).fetchall()
    assert [v for (v,) in values] == sorted(v for (v,) in values)  # a register, from the load model
    assert _scalar(db_conn, "SELECT DISTINCT source FROM amiflow.v_readings WHERE meter = %s", name) == "sml"


async def test_amiflow_sim_sml_read_by_the_poller(db_conn: psycopg.Connection[Any]) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "amiflow_app", *SIM_SML.split()],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)
        found = re.search(r"server id ([^)]+)\).*: (sml\+tcp://\S+)", line)
        assert found, line
        name = found[1].replace(" ", "")
        assert name == "1ITR0010000006"
        _register(db_conn, name, "sml", found[2])
        poller = Poller(PollStore(db_conn), PollerConfig(interval_s=900))
        stop = asyncio.Event()
        run = asyncio.create_task(poller.run(stop))
        await _until(lambda: poller.push is not None and name in poller.push.readers)
        assert poller.push is not None
        reader = poller.push.readers[name]
        await _until(lambda: reader.counters["frames_ok"] >= 20 and reader.counters["readings"] > 0)
        stop.set()
        await asyncio.wait_for(run, 10)
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0  # SIGTERM: stopped cleanly
    assert reader.counters["frames_bad"] == 0 and reader.counters["sampled_out"] > 0  # one file a minute is kept
    rows = db_conn.execute(
        "SELECT obis, unit FROM amiflow.v_readings WHERE meter = %s ORDER BY obis", (name,)
    ).fetchall()
    assert ("1-0:1.8.0", "Wh") in rows and ("1-0:16.7.0", "W") in rows
    state = _scalar(db_conn, "SELECT state FROM amiflow.meters WHERE name = %s", name)
    assert state == "online"


class P1Bridge:
    """A DSMR 5 meter behind a TCP serial server: a telegram every few ms to each connection, now and then with a
    flipped bit, noise in front, or cut short."""

    def __init__(self, seed: int = 3) -> None:
        self.rng = random.Random(seed)
        self.sent = 0
        self.faults: dict[str, int] = {}
        self.port = 0
        self.closing = False  # set: the meter side hangs up after the telegram under way, and refuses new links
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[Any]] = set()

    def _telegram(self) -> bytes:
        k = self.sent
        self.sent += 1
        data = dsmr5_telegram(equipment_id="E0042", ts=1_790_000_000 + k, import_wh=(10_000.0 + k, 500.0))
        fault = self.rng.choice(FAULTS) if self.rng.random() < 0.3 else None
        if fault is None:
            return data
        self.faults[fault] = self.faults.get(fault, 0) + 1
        if fault == "bit_error":
            buf = bytearray(data)
            buf[buf.index(b"1-0:1.8.1(") + 12] ^= 0x01
            return bytes(buf)
        if fault == "truncate":
            return data[: self.rng.randrange(5, len(data) - 10)]
        return bytes(self.rng.choice(b"\x00\xff abc") for _ in range(self.rng.randint(1, 30))) + data

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        try:
            while not self.closing:
                writer.write(self._telegram())
                await writer.drain()
                await asyncio.sleep(0.005)
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass  # the reader went away, or the bridge stops: a handler that ends cancelled is logged by asyncio
        finally:
            writer.close()

    async def __aenter__(self) -> P1Bridge:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._sessions:
            task.cancel()
        await asyncio.gather(*self._sessions, return_exceptions=True)


async def test_p1_meter_behind_a_tcp_serial_server(db_conn: psycopg.Connection[Any]) -> None:
    async with P1Bridge() as bridge:
        _register(db_conn, "FLAT42", "p1", f"p1+tcp://127.0.0.1:{bridge.port}")
        fleet = PushFleet(PushStore(db_conn), EVERY_FRAME)
        await fleet.refresh()
        reader = fleet.readers["FLAT42"]
        await _until(lambda: reader.counters["frames_ok"] >= 80 and len(reader.bad_reasons) == 2)
        bridge.closing = True
        await _until(lambda: reader.counters["link_failures"] >= 1)  # read to the end of the link
        await fleet.stop()
    c = reader.counters
    _check_stored(db_conn, reader)
    assert set(reader.bad_reasons) == {"bad_crc", "truncated"}
    # every telegram sent is accounted for: good (with or without noise in front), bad CRC or truncated
    assert reader.frames_seen == bridge.sent
    assert reader.bad_reasons == {"bad_crc": bridge.faults["bit_error"], "truncated": bridge.faults["truncate"]}
    assert c["frames_ok"] == bridge.sent - bridge.faults["bit_error"] - bridge.faults["truncate"]
    # each telegram has its own clock second: every good one is one stored 1-0:1.8.0 row, in order
    totals = db_conn.execute(
        "SELECT extract(epoch FROM ts)::bigint - 1790000000, value FROM amiflow.v_readings"
        " WHERE meter = 'FLAT42' AND obis = '1-0:1.8.0' ORDER BY ts"
    ).fetchall()
    assert len(totals) == c["frames_ok"] and all(v == 10_500.0 + k for k, v in totals)
    assert _scalar(db_conn, "SELECT DISTINCT source FROM amiflow.v_readings WHERE meter = 'FLAT42'") == "p1"
