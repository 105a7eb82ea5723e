"""The shared refresh loop: one gather per tick for any number of pages, the newest message only, nothing when
nobody watches, and a failing gather reported as a message."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from amiflow_app.dashboard.live import FigureHub


class Counter:
    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self) -> dict[str, Any]:
        with self.lock:
            self.calls += 1
            if self.fail:
                raise OSError("connection refused\nsecond line")
            return {"type": "figures", "n": self.calls}


async def test_watchers_share_one_loop_and_get_the_newest() -> None:
    gather = Counter()
    hub = FigureHub(gather, every_s=0.01)
    async with hub.watch() as a, hub.watch() as b:
        first = await asyncio.wait_for(a.get(), 5)
        assert first["n"] >= 1
        await asyncio.sleep(0.1)  # b takes nothing meanwhile: it holds only the newest message
        assert b.qsize() == 1
        newest = (await b.get())["n"]
        assert newest > 1 and newest >= gather.calls - 1
    await asyncio.sleep(0.1)
    calls = gather.calls
    await asyncio.sleep(0.1)
    assert gather.calls == calls  # nobody watches: nothing runs


async def test_a_late_watcher_gets_a_fresh_message_at_once() -> None:
    hub = FigureHub(Counter(), every_s=30)
    async with hub.watch() as a:
        await asyncio.wait_for(a.get(), 5)
        async with hub.watch() as b:
            assert b.qsize() == 1  # no wait for the next tick (30 s away)


async def test_a_failing_gather_becomes_an_error_message_and_the_loop_goes_on() -> None:
    gather = Counter(fail=True)
    hub = FigureHub(gather, every_s=0.01)
    async with hub.watch() as q:
        m = await asyncio.wait_for(q.get(), 5)
        assert m["type"] == "error" and m["detail"] == "OSError: connection refused"
        gather.fail = False
        while (m := await asyncio.wait_for(q.get(), 5))["type"] != "figures":
            pass
    assert hub.failures >= 1
