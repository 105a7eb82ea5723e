"""Push readers on a real database: SML and P1 bytes from a TCP serial server the test scripts (noise, bit errors,
cut frames, a dropped link, another meter's files), read into amiflow.readings with interval energy at boundaries,
bad frames quarantined with their raw bytes and counted, the link reopened with backoff, a dead link marking the
meter offline; and the poller running the readers beside its polls."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from amiflow.db.registry import MeterRecord, add_meter
from amiflow.types import Source
from ingest.poll_store import PollStore
from ingest.poller import Poller, PollerConfig
from ingest.push_fleet import PushFleet
from ingest.push_reader import PushConfig, PushReader
from ingest.push_store import PushStore
from protocols.p1 import dsmr5_telegram
from simulators.sml_profiles import SmlMeter

pytestmark = pytest.mark.timeout(60)

T0 = 1_790_000_100 // 900 * 900  # an interval boundary, 2026-09-21
FAST = PushConfig(backoff_base_s=0.01, backoff_max_s=0.05, silence_s=2.0, connect_timeout_s=1.0)


class ScriptedBridge:
    """A TCP serial server: connection k is sent ``scripts[k]`` (chunks) and then held open, or closed when the
    script ends with None; connections past the scripts stay silent."""

    def __init__(self, scripts: list[list[bytes | None]]) -> None:
        self.scripts = scripts
        self.connections = 0
        self.release = asyncio.Event()  # connections after the first wait for it before they send
        self._server: asyncio.Server | None = None
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        script = self.scripts[self.connections] if self.connections < len(self.scripts) else []
        self.connections += 1
        if self.connections > 1:
            await self.release.wait()
        try:
            for chunk in script:
                if chunk is None:
                    return
                writer.write(chunk)
                await writer.drain()
                await asyncio.sleep(0.01)
            await reader.read()  # hold the link until the reader goes
        finally:
            writer.close()

    async def __aenter__(self) -> ScriptedBridge:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()


async def _until(cond: Callable[[], bool], timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


def _register(conn: psycopg.Connection[Any], name: str, protocol: str, uri: str) -> int:
    add_meter(conn, MeterRecord(name=name, protocol=protocol, uri=uri))
    row = conn.execute("SELECT id FROM amiflow.meters WHERE name = %s", (name,)).fetchone()
    assert row is not None
    return int(row[0])


def _rows(conn: psycopg.Connection[Any], sql: str, *params: Any) -> list[tuple[Any, ...]]:
    return conn.execute(sql, params).fetchall()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_sml_over_tcp_with_faults_a_dropped_link_and_interval_energy(db_conn: psycopg.Connection[Any]) -> None:
    meter = SmlMeter("ehz", seed=5, meter_index=1)
    name = meter.meter_id.replace(" ", "")  # 1EMH0010000001: the nameplate id without spaces
    files = {k: meter.file(T0 + k) for k in (0, 1, 2, 900, 901)}
    flipped = bytearray(files[1])
    flipped[40] ^= 0x04
    scripts: list[list[bytes | None]] = [
        [b"\x00\x11noise" + files[0], bytes(flipped), files[2][:70], None],  # link drops inside a file
        [b"\xffmore noise", files[900], files[901]],
    ]
    clock = Clock(T0 + 3)
    async with ScriptedBridge(scripts) as bridge:
        meter_id = _register(db_conn, name, "sml", f"sml+tcp://127.0.0.1:{bridge.port}")
        row = PushStore(db_conn).meters()[0]
        reader = PushReader(row, PushStore(db_conn), FAST, clock=clock)
        task = asyncio.create_task(reader.run())
        try:
            await _until(lambda: reader.frames_seen >= 3)
            clock.now = T0 + 903  # the next link's files arrive after the boundary
            bridge.release.set()
            await _until(lambda: reader.counters["frames_ok"] >= 3)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    c = reader.counters
    assert (c["frames_ok"], c["frames_bad"], c["connects"]) == (3, 2, 2)
    assert reader.bad_reasons == {"bad_crc": 1, "truncated": 1}
    assert c["skipped_bytes"] == len(b"\x00\x11noise") + len(b"\xffmore noise")
    q = _rows(db_conn, "SELECT source, reason, meter, raw FROM amiflow.quarantine ORDER BY id")
    assert [(s, r, m) for s, r, m, _ in q] == [("sml", "bad_crc", name), ("sml", "truncated", name)]
    assert bytes(q[0][3]) == bytes(flipped) and bytes(q[1][3]) == files[2][:70]
    imp0, _ = meter.registers_wh(T0)
    imp900, _ = meter.registers_wh(T0 + 900)
    stored = _rows(
        db_conn,
        "SELECT obis, extract(epoch FROM ts)::bigint, value, source FROM amiflow.v_readings WHERE meter = %s"
        " AND obis IN ('1-0:1.8.0', '1-0:1.29.0') ORDER BY ts, obis",
        name,
    )
    # the first file of its minute (T0+3), the first after the boundary (T0+903; the one after it is sampled out)
    # and the interval energy between the registers at the two boundaries
    assert stored == [
        ("1-0:1.8.0", T0 + 3, imp0, "sml"),
        ("1-0:1.29.0", T0 + 900, imp900 - imp0, "sml"),
        ("1-0:1.8.0", T0 + 903, imp900, "sml"),
    ]
    assert c["sampled_out"] > 0
    state = _rows(db_conn, "SELECT failures, extract(epoch FROM last_register_ts)::bigint FROM amiflow.poll_state")
    assert state == [(0, T0 + 900)]
    assert _rows(db_conn, "SELECT state FROM amiflow.meters WHERE id = %s", meter_id) == [("online",)]


async def test_another_meters_files_are_quarantined_not_stored(db_conn: psycopg.Connection[Any]) -> None:
    neighbour = SmlMeter("itron", meter_index=8)
    async with ScriptedBridge([[neighbour.file(T0), neighbour.file(T0 + 1)]]) as bridge:
        _register(db_conn, "1ITR0010000007", "sml", f"sml+tcp://127.0.0.1:{bridge.port}")
        reader = PushReader(PushStore(db_conn).meters()[0], PushStore(db_conn), FAST, clock=Clock(T0 + 1))
        task = asyncio.create_task(reader.run())
        await _until(lambda: reader.frames_seen >= 2)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert reader.bad_reasons == {"wrong_meter": 2}
    assert _rows(db_conn, "SELECT count(*) FROM amiflow.readings") == [(0,)]
    details = _rows(db_conn, "SELECT reason, detail FROM amiflow.quarantine")
    assert {r for r, _ in details} == {"wrong_meter"} and "1 ITR00 10000008" in details[0][1]


async def test_a_dead_link_is_retried_with_backoff_and_marks_the_meter_offline(
    db_conn: psycopg.Connection[Any],
) -> None:
    async with ScriptedBridge([]) as bridge:
        port = bridge.port
    meter_id = _register(db_conn, "FLAT9", "p1", f"p1+tcp://127.0.0.1:{port}")  # nobody listens there any more
    reader = PushReader(PushStore(db_conn).meters()[0], PushStore(db_conn), FAST)
    task = asyncio.create_task(reader.run())
    await _until(lambda: reader.counters["link_failures"] >= 4)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert reader.counters["connects"] == 0
    sql = "SELECT failures, last_error FROM amiflow.poll_state WHERE meter_id = %s"
    ((failures, error),) = _rows(db_conn, sql, meter_id)
    assert failures >= 4 and "ConnectError" in error and f"127.0.0.1:{port}" in error
    assert _rows(db_conn, "SELECT state FROM amiflow.meters WHERE id = %s", meter_id) == [("offline",)]


async def test_the_poller_reads_push_meters_beside_its_polls(db_conn: psycopg.Connection[Any]) -> None:
    telegrams: list[bytes | None] = [
        dsmr5_telegram(equipment_id="E77", ts=T0 + 60 * k, import_wh=(5000.0 + k, 0.0)) for k in range(3)
    ]
    async with ScriptedBridge([telegrams]) as bridge:
        _register(db_conn, "FLAT7", "p1", f"p1+tcp://127.0.0.1:{bridge.port}")
        poller = Poller(PollStore(db_conn), PollerConfig(interval_s=900))
        stop = asyncio.Event()
        run = asyncio.create_task(poller.run(stop))
        await _until(lambda: poller.push is not None and "FLAT7" in poller.push.readers)
        assert poller.push is not None
        reader = poller.push.readers["FLAT7"]
        await _until(lambda: reader.counters["readings"] > 0 and reader.counters["frames_ok"] == 3)
        assert 'amiflow_push_frames_total{meter="FLAT7",result="ok"} 3' in poller.prometheus()
        stop.set()
        await asyncio.wait_for(run, 5)
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("push-")]  # stopped with the poller
    values = _rows(
        db_conn,
        "SELECT extract(epoch FROM ts)::bigint, value FROM amiflow.v_readings WHERE meter = 'FLAT7'"
        " AND obis = '1-0:1.8.0' ORDER BY ts",
    )
    assert values == [(T0 + 60 * k, 5000.0 + k) for k in range(3)]  # DSMR's clock; one per minute: all sampled
    sources = _rows(db_conn, "SELECT DISTINCT source FROM amiflow.readings")
    assert sources == [(int(Source.P1),)]


async def test_the_fleet_follows_the_registry(db_conn: psycopg.Connection[Any]) -> None:
    async with ScriptedBridge([]) as bridge:
        fleet = PushFleet(PushStore(db_conn), FAST)
        assert await fleet.refresh() == 0
        _register(db_conn, "S1", "sml", f"sml+tcp://127.0.0.1:{bridge.port}?server_id=1EMH0010000001")
        assert await fleet.refresh() == 1
        db_conn.execute("UPDATE amiflow.meters SET status = 'inactive' WHERE name = 'S1'")
        assert await fleet.refresh() == 0
        await fleet.stop()
