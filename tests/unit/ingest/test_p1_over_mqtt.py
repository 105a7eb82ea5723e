"""A DSMR 2.2 telegram (no clock line) published on ``{prefix}/{meter}/p1`` is stored, stamped with the time it was
received; the "read with the receive time" note is not quarantined (it is information, not bad input)."""

from __future__ import annotations

from pathlib import Path

from ingest.batching import BatchBuilder, Message

TELEGRAM = (Path(__file__).parents[2] / "data" / "p1" / "smeterd_v22_iskra_me382_1004.txt").read_bytes()


def test_a_clockless_telegram_is_stamped_with_its_receive_time() -> None:
    b = BatchBuilder()
    b.add(Message("ami/v1/E1/p1", TELEGRAM, received_at=1_796_000_000.4))
    p = b.take()
    assert not p.quarantine
    stamped = [ts for obis, ts in zip(p.row_obis, p.row_ts, strict=False) if obis.startswith("1-0:1.8")]
    batch_ts = [int(t) for part in p.parts for o, t in zip(part.obis, part.ts, strict=True) if o.startswith("1-0:1.8")]
    assert set(stamped + batch_ts) == {1_796_000_000}


def test_a_broken_telegram_is_still_quarantined() -> None:
    b = BatchBuilder()
    b.add(Message("ami/v1/E1/p1", TELEGRAM.replace(b"00608.400", b"00608.4x0"), received_at=1_796_000_000.0))
    assert [q.reason for q in b.take().quarantine]
