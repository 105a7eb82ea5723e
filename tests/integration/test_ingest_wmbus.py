"""The wireless M-Bus receiver end to end against PostgreSQL: simulated meters send encrypted frames (per-meter
keys) as hex lines over TCP; the receiver decodes them with the registry's keys and stores the readings of the
registered meters (source wmbus); a repeated frame's readings are duplicates; unknown senders, missing and wrong
keys and bad CRCs are quarantined with the raw frame and a reason; while the database is away frames are spooled
and replayed, none lost; and the two commands piped together (``sim wmbus --listen -`` into ``ingest wmbus
--from -``) do the same from a shell."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg

from amiflow.db.meter_keys import MeterKey, set_meter_key
from amiflow.db.registry import MeterRecord, add_meter, import_meters_csv
from ingest.spool import Spool
from ingest.validate import Bounds
from ingest.wmbus_ingest import WmbusIngest
from ingest.wmbus_sources import open_source
from ingest.wmbus_store import WmbusStore
from protocols.mbus.header import encode_manufacturer
from simulators.mbus_devices import sim_key
from simulators.mbus_wireless import WmbusSimulator

DEVICES = "water:51000001,heat:51000002,gas:51000003,water:51000005,electricity:51000004"
SEED = 4
BOUNDS = Bounds(reading_horizon_days=36500, clock_skew_future_s=10**9)  # the simulated times are far from now


def _register(conn: psycopg.Connection[Any], sim: WmbusSimulator) -> None:
    """Water 1 and heat 2 with their keys, gas 3 with a wrong key, water 5 without one; electricity 4 unknown."""
    keys = {"51000001": sim_key(SEED, "51000001"), "51000002": sim_key(SEED, "51000002"),
            "51000003": sim_key(SEED + 1, "51000003")}  # fmt: skip
    for m in sim.meters:
        if m.ident == "51000004":
            continue
        add_meter(conn, MeterRecord(name=f"W{m.ident}", protocol="wmbus",
                                    uri=f"wmbus://{m.ident}?manufacturer={m.manufacturer}"))  # fmt: skip
        if m.ident in keys:
            set_meter_key(conn, f"W{m.ident}", MeterKey(keys[m.ident]))


def _quarantine(conn: psycopg.Connection[Any]) -> dict[str, int]:
    rows = conn.execute("SELECT reason, count(*) FROM amiflow.v_quarantine WHERE source = 'wmbus' GROUP BY 1")
    return dict(rows.fetchall())


def test_frames_over_tcp_are_stored_or_quarantined(
    db_url: str, db_conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    async def run() -> Any:
        async with WmbusSimulator(devices=DEVICES, seed=SEED) as sim:
            _register(db_conn, sim)
            spool = Spool(tmp_path / "spool", max_bytes=1 << 24)
            spool.open()
            receiver = WmbusIngest(WmbusStore(db_url, bounds=BOUNDS), spool, latency_s=0.05)
            stop = asyncio.Event()
            async with open_source(sim.uri, once=True) as read:
                task = asyncio.create_task(receiver.run(read, stop))
                await sim.wait_for_clients(1)
                times = [1_790_000_000 + 900 * i for i in range(3)]
                rounds = [sim.encode(sim.frames(t), t) for t in times]  # lines stamped with the time of the round
                for data in rounds:
                    await sim.broadcast(data)
                await sim.broadcast(rounds[0])  # heard again (a repeater): its readings are duplicates
                bad = bytearray(sim.frames()[0])
                bad[15] ^= 0x01
                await sim.broadcast(bad.hex().encode() + b"\n")
                await asyncio.sleep(0.3)
            await sim.stop()  # the stream ends: with once=True so does the receiver
            counts = await asyncio.wait_for(task, 10)
            spool.close()
            return counts

    counts = asyncio.run(run())
    assert counts.frames == 5 * 4 + 1 and counts.spooled == 0 and counts.conflicts == 0
    by_meter = dict(db_conn.execute(
        "SELECT meter, count(*) FROM amiflow.v_readings WHERE source = 'wmbus' GROUP BY 1").fetchall())  # fmt: skip
    assert set(by_meter) == {"W51000001", "W51000002"}, by_meter
    per_round = (by_meter["W51000001"] + by_meter["W51000002"]) // 3
    assert counts.stored == 3 * per_round and counts.duplicates == per_round
    units = dict(db_conn.execute("SELECT obis, unit FROM amiflow.v_readings WHERE meter = 'W51000002'").fetchall())
    assert units["6-0:1.8.0"] == "Wh" and units["6-0:2.8.0"] == "m3" and units["6-0:10.7.0"] == "degC"
    expected = {"bad_key": 4, "no_key": 4, "unknown_meter": 4, "bad_crc": 1}
    assert _quarantine(db_conn) == expected == counts.quarantined
    raw = db_conn.execute("SELECT raw FROM amiflow.v_quarantine WHERE reason = 'unknown_meter' LIMIT 1").fetchone()
    assert raw is not None and bytes(raw[0])[2:4] == encode_manufacturer("ABB")  # the unregistered sender
    seen = db_conn.execute("SELECT state, last_seen_at IS NOT NULL FROM amiflow.meters WHERE name = 'W51000001'")
    assert seen.fetchone() == ("online", True)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_frames_heard_while_the_database_is_away_are_spooled_and_replayed(
    db_url: str, db_conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    sim = WmbusSimulator(devices="water:51000001,heat:51000002", seed=SEED)
    _register(db_conn, sim)
    times = [1_790_000_000 + 900 * i for i in range(6)]
    chunks = [sim.encode(sim.frames(t), t) for t in times]
    store = WmbusStore(f"postgresql://postgres@127.0.0.1:{_closed_port()}/nowhere", bounds=BOUNDS)
    spool = Spool(tmp_path / "spool", max_bytes=1 << 24)
    spool.open()
    receiver = WmbusIngest(store, spool, latency_s=0.01)

    async def read() -> bytes:
        await asyncio.sleep(0.05)
        if not chunks:
            return b""
        if len(chunks) == 3:
            store.url = db_url  # the database is back
            await asyncio.sleep(2.5)  # past the receiver's next probe
        return chunks.pop(0)

    counts = asyncio.run(receiver.run(read, asyncio.Event()))
    spool.close()
    stored = db_conn.execute("SELECT count(*) FROM amiflow.v_readings WHERE source = 'wmbus'").fetchone()
    assert counts.spooled == 6 and counts.replayed == 6 and not spool  # 3 rounds of 2 meters while it was away
    assert stored is not None and stored[0] == counts.stored and (counts.duplicates, counts.conflicts) == (0, 0)
    water = db_conn.execute("SELECT count(*) FROM amiflow.v_readings WHERE meter = 'W51000001'").fetchone()
    assert water == (6,)  # its volume register of every round: none lost


def test_sim_piped_into_the_receiver(db_url: str, db_conn: psycopg.Connection[Any], tmp_path: Path) -> None:
    env = {**os.environ, "AMIFLOW_DATABASE_URL": db_url, "AMIFLOW_DATA_DIR": str(tmp_path)}
    keys = tmp_path / "meters.csv"
    sim = [sys.executable, "-m", "amiflow_app", "sim", "wmbus", "--listen", "-", "--count", "3", "--every", "0",
           "--step", "900", "--start", "2026-11-01T00:00:00Z", "--stamp", "--devices", "water:52000001,heat:52000002",
           "--seed", "9", "--keys-out", str(keys)]  # fmt: skip
    receiver = [sys.executable, "-m", "amiflow_app", "ingest", "wmbus", "--from", "-"]
    producer = subprocess.Popen(sim, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert producer.stdout is not None
    frames = producer.stdout.read()
    assert producer.wait(30) == 0 and frames.count(b"\n") == 6
    assert oct(keys.stat().st_mode & 0o777) == "0o600"
    import_meters_csv(db_conn, keys.read_text())
    done = subprocess.run(receiver, input=frames, env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert b"6 frames heard" in done.stderr and b"quarantined: none" in done.stderr, done.stderr
    stored = db_conn.execute("SELECT meter, min(ts), count(DISTINCT ts), count(*) FROM amiflow.v_readings GROUP BY 1"
                             " ORDER BY 1").fetchall()  # fmt: skip
    assert [(m, t.isoformat(), n) for m, t, n, _ in stored] == [
        ("W52000001", "2026-11-01T00:00:00+00:00", 3), ("W52000002", "2026-11-01T00:00:00+00:00", 3)]  # fmt: skip
    total = sum(r[3] for r in stored)
    again = subprocess.run(receiver, input=frames, env=env, capture_output=True, timeout=60)  # the log read twice
    assert f" 0 readings stored, {total} duplicates".encode() in again.stderr, again.stderr
    bad = subprocess.run([*receiver[:-1], "ftp://x"], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "--from 'ftp://x'" in bad.stderr


def test_a_stick_on_a_serial_line_sends_raw_frames(
    db_url: str, db_conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    async def run() -> Any:
        async with WmbusSimulator("pty", devices="water:51000001,heat:51000002", seed=SEED, mode="raw",
                                  fmt="B") as sim:  # fmt: skip
            _register(db_conn, WmbusSimulator(devices="water:51000001,heat:51000002", seed=SEED))
            spool = Spool(tmp_path / "spool", max_bytes=1 << 24)
            spool.open()
            receiver = WmbusIngest(WmbusStore(db_url, bounds=BOUNDS), spool, mode="raw", latency_s=0.05)
            stop = asyncio.Event()
            assert sim.uri.startswith("serial:///dev/")
            async with open_source(sim.uri + "?baud=9600") as read:
                task = asyncio.create_task(receiver.run(read, stop))
                await asyncio.sleep(0.2)  # the link is open
                for i in range(3):
                    await sim.broadcast(b"\x00\xff" + sim.encode(sim.frames(1_790_000_000 + 900 * i)))
                    await asyncio.sleep(1.1)  # a second apart: one reading per channel and second
                stop.set()
                counts = await asyncio.wait_for(task, 10)
            spool.close()
            return counts

    counts = asyncio.run(run())
    assert counts.frames == 6 and counts.unframed_bytes == 6 and counts.quarantined == {}
    assert db_conn.execute("SELECT count(*) FROM amiflow.v_readings WHERE meter = 'W51000001'").fetchone() == (3,)
