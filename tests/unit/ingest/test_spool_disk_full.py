"""The spool on a full disk (found by the chaos run's full-spool case, issue 17):
a batch cut short by ENOSPC leaves no torn record
behind (the next batch would follow it and replay would stop there, setting acknowledged messages aside as corrupt),
a full disk is SpoolFull (the worker stops acknowledging and says why) and not a bare write error, and some room is
kept free so that replay can still write its cursor and drain the spool."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from ingest import spool as spool_module
from ingest.spool import Spool, SpoolFull


def msgs(n: int, start: int = 0) -> list[tuple[str, bytes, float]]:
    return [(f"ami/v1/M{i}/readings", b'{"i": %d}' % i + b" " * 200, 1000.0 + i) for i in range(start, start + n)]


def test_a_batch_cut_short_by_a_full_disk_leaves_no_torn_record(tmp_path: Path, monkeypatch: Any) -> None:
    s = Spool(tmp_path, max_bytes=1 << 20)
    s.append(msgs(3))
    real_write = os.write

    def half_then_enospc(fd: int, data: Any) -> int:
        if len(data) > 100:
            return real_write(fd, bytes(data[: len(data) // 2]))  # a short write, as a filling disk gives
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spool_module.os, "write", half_then_enospc)
    with pytest.raises(SpoolFull, match="the disk is full"):
        s.append(msgs(4, 3))
    monkeypatch.setattr(spool_module.os, "write", real_write)
    s.append(msgs(2, 7))
    got = [r.payload for r in s.read(100)]
    assert got == [m[1] for m in msgs(3) + msgs(2, 7)]
    assert not list(tmp_path.glob("*.corrupt"))
    s.close()
    reopened = Spool(tmp_path, max_bytes=1 << 20)
    assert [r.payload for r in reopened.read(100)] == got


def test_the_last_free_room_of_the_disk_is_kept_for_replay(tmp_path: Path, monkeypatch: Any) -> None:
    s = Spool(tmp_path, max_bytes=1 << 30)
    s.append(msgs(2))
    real = os.statvfs(tmp_path)

    class Nearly:
        f_frsize = real.f_frsize
        f_bavail = (200 << 10) // real.f_frsize  # 200 KiB free: less than the reserve

    monkeypatch.setattr(spool_module.os, "statvfs", lambda path: Nearly())
    with pytest.raises(SpoolFull, match="kept for replay"):
        s.append(msgs(1, 2))
    records = s.read(10)
    s.commit(records[-1].position)  # replay still drains and records its cursor
    assert not s
