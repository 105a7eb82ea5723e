"""The wM-Bus receiver's pure parts: the decoder's reasons (registry snapshot, keys), the time a frame is given
(its line's stamp, else the first time its bytes were heard within the repeat window), and batching through a
fake store (no database)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from ingest.spool import Spool
from ingest.wmbus_decode import Decoded, Senders, decode_frame
from ingest.wmbus_ingest import WmbusIngest, line_time
from ingest.wmbus_store import WmbusOutcome
from simulators.mbus_devices import sim_key
from simulators.mbus_wireless import WmbusSimulator

T = 1_790_000_000


@pytest.mark.parametrize(
    ("line", "ts"),
    [
        (b"2026-11-01T00:15:00Z;2e44...", 1_793_492_100),
        (b"T1;1;1;2026-11-01 00:15:00.000;97;148;12345678;0x2e44", 1_793_492_100),
        (b"2026-11-01T01:15:00+01:00 2e44", 1_793_492_100),
        (b"2e4493157856341233037a", None),
        (b"2026-13-01T00:15:00Z;2e44", None),
    ],
)
def test_line_time(line: bytes, ts: int | None) -> None:
    assert line_time(line) == ts


def test_decoder_reasons() -> None:
    sim = WmbusSimulator("-", devices="water:51000001,heat:51000002,gas:51000003,water:51000005", seed=3)
    meters = [(f"W{m.ident}", f"wmbus://{m.ident}?manufacturer={m.manufacturer}") for m in sim.meters[:3]]
    meters.append(("ANY5", "wmbus://51000005"))  # no manufacturer: any maker with that ident
    keys = {"W51000001": sim_key(3, "51000001"), "W51000002": sim_key(3, "51000002"), "ANY5": sim_key(3, "51000005")}
    senders = Senders(meters, keys | {"W51000003": bytes(16)})
    assert "keys" in repr(senders) and sim_key(3, "51000001").hex() not in repr(senders)
    water, heat, gas, any5 = (decode_frame(f, T, senders) for f in sim.frames(T))
    assert (water.meter, water.reason, list(water.batch.obis)) == ("W51000001", None, ["8-0:1.8.0"])
    assert heat.reason is None and "6-0:1.8.0" in set(heat.batch.obis) and set(heat.batch.source) == {12}
    assert (gas.meter, gas.reason, len(gas.batch)) == ("W51000003", "bad_key", 0)
    assert any5.meter == "ANY5" and any5.reason is None
    nobody = decode_frame(sim.frames(T)[0], T, Senders())
    assert nobody.reason == "unknown_meter" and '"ident": "51000001"' in (nobody.detail or "")
    locked = decode_frame(sim.frames(T)[0], T, Senders(meters[:1]))
    assert locked.reason == "no_key"
    frame = bytearray(sim.frames(T)[0])
    frame[20] ^= 0x40
    assert decode_frame(bytes(frame), T, senders).reason == "bad_crc"
    assert decode_frame(b"\x05\x44\x00", T, senders).reason == "bad_frame"


class FakeStore:
    """Takes what the receiver commits; the registry knows the simulator's water meter."""

    def __init__(self, senders: Senders) -> None:
        self.batches: list[list[Decoded]] = []
        self._senders = senders

    def senders(self) -> Senders:
        return self._senders

    def write(self, frames: Sequence[Decoded], *, now: float) -> WmbusOutcome:
        self.batches.append(list(frames))
        return WmbusOutcome()


def test_repeats_keep_the_first_time_within_the_window(tmp_path: Path) -> None:
    sim = WmbusSimulator("-", devices="water:51000001", seed=3, encrypt=False)
    store = FakeStore(Senders([("W1", "wmbus://51000001")]))
    now = [1000.0]
    receiver = WmbusIngest(store, Spool(tmp_path, max_bytes=1 << 20), latency_s=0.0, repeat_window_s=60,
                           clock=lambda: now[0])  # type: ignore[arg-type]  # fmt: skip
    first, second = sim.frames(T)[0], sim.frames(T + 900)[0]
    stream = [first.hex().encode() + b"\n", second.hex().encode() + b"\n", first.hex().encode() + b"\n", b""]
    late = [first.hex().encode() + b"\n", b""]

    async def read() -> bytes:
        await asyncio.sleep(0)
        now[0] += 10.0
        return stream.pop(0)

    counts = asyncio.run(receiver.run(read, asyncio.Event()))
    heard = [(d.raw, d.ts) for batch in store.batches for d in batch]
    assert heard == [(first, 1010), (second, 1020), (first, 1010)] and counts.repeated == 1
    now[0] += 100.0  # past the window: the same bytes now count as a new hearing
    stream[:] = late
    store.batches.clear()
    asyncio.run(receiver.run(read, asyncio.Event()))
    assert [d.ts for batch in store.batches for d in batch] == [1150]
