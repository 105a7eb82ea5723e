"""The durable spool: order, restart, torn tails, corruption, the size bound, the replay cursor."""

from __future__ import annotations

from pathlib import Path

import pytest

from amiflow.errors import StorageError
from ingest.spool import Spool, SpoolFull, encode_record


def msgs(n: int, start: int = 0) -> list[tuple[str, bytes, float]]:
    return [(f"ami/v1/M{i}/readings", b'{"i": %d}' % i, 1000.0 + i) for i in range(start, start + n)]


def test_append_read_commit_in_order(tmp_path: Path) -> None:
    s = Spool(tmp_path, max_bytes=1 << 20)
    assert not s
    s.append(msgs(5))
    s.append(msgs(5, 5))
    recs = s.read(7)
    assert [r.payload for r in recs] == [m[1] for m in msgs(7)]
    assert recs[0].topic == "ami/v1/M0/readings" and recs[0].received_at == 1000.0
    s.commit(recs[-1].position)
    rest = s.read(100)
    assert [r.payload for r in rest] == [m[1] for m in msgs(3, 7)]
    s.commit(rest[-1].position)
    assert not s and s.pending_bytes == 0 and s.size_bytes == 0
    s.append(msgs(1, 99))  # a fresh segment after the drained one
    assert [r.payload for r in s.read(10)] == [msgs(1, 99)[0][1]]


def test_survives_restart_and_resumes_at_the_cursor(tmp_path: Path) -> None:
    s = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=200)  # several segments
    s.append(msgs(4))
    s.append(msgs(4, 4))
    s.append(msgs(4, 8))
    s.commit(s.read(5)[-1].position)
    s.close()  # a restart
    again = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=200)
    assert [r.payload for r in again.read(100)] == [m[1] for m in msgs(7, 5)]


def test_torn_tail_is_truncated_at_every_cut(tmp_path: Path) -> None:
    whole = encode_record("t", b"payload", 1.0)
    for cut in range(1, len(whole)):
        d = tmp_path / str(cut)
        first = Spool(d, max_bytes=1 << 20)
        first.append(msgs(3))
        first.close()
        with next(d.glob("seg-*.log")).open("ab") as f:
            f.write(whole[:cut])  # a crash in the middle of an append (never acknowledged)
        again = Spool(d, max_bytes=1 << 20)
        assert [r.payload for r in again.read(10)] == [m[1] for m in msgs(3)]
        again.append(msgs(1, 3))
        again.close()
        assert len(Spool(d, max_bytes=1 << 20).read(10)) == 4


def test_corrupt_record_sets_the_segment_aside(tmp_path: Path) -> None:
    s = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=50)
    s.append(msgs(2))
    s.append(msgs(2, 2))  # second segment
    s.close()
    first = sorted(tmp_path.glob("seg-*.log"))[0]
    data = bytearray(first.read_bytes())
    data[-3] ^= 0xFF
    first.write_bytes(bytes(data))
    got = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=50).read(10)
    assert [r.payload for r in got] == [m[1] for m in msgs(1)] + [m[1] for m in msgs(2, 2)]
    assert list(tmp_path.glob("*.corrupt"))


def test_bound_refuses_without_writing(tmp_path: Path) -> None:
    s = Spool(tmp_path, max_bytes=300)
    s.append(msgs(3))
    before = s.size_bytes
    with pytest.raises(SpoolFull):
        s.append(msgs(10))
    assert s.size_bytes == before
    assert isinstance(SpoolFull("x"), StorageError)
    s.commit(s.read(10)[-1].position)  # replay frees the space
    s.append(msgs(3))


def test_one_process_per_spool(tmp_path: Path) -> None:
    first = Spool(tmp_path, max_bytes=1 << 20)
    first.append(msgs(1))
    with pytest.raises(StorageError, match="in use by another process"):
        Spool(tmp_path, max_bytes=1 << 20).open()
    first.close()
    again = Spool(tmp_path, max_bytes=1 << 20)
    assert len(again.read(10)) == 1
