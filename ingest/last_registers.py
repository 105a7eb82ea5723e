"""The newest stored value of each cumulative energy register, so validation can tell when a register ran backwards.

A cache in front of ``amiflow.readings``: a (meter, OBIS) pair is looked up once, then kept current from what the
batch store itself writes. It must be dropped whenever a transaction rolls back (its values may never have been
committed).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg

from amiflow.types import ReadingBatch

__all__ = ["LastRegisters"]

_MAX_ENTRIES = 2_000_000  # start over rather than grow without bound on a very large fleet


class LastRegisters:
    """(meter, OBIS) -> (ts, value) of the newest stored reading of each cumulative (``x.8.y``) register."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, str], tuple[int, float] | None] = {}

    def clear(self) -> None:
        self._known.clear()

    def lookup(self, conn: psycopg.Connection[Any], batch: ReadingBatch) -> dict[tuple[str, str], tuple[int, float]]:
        """The newest stored value of every cumulative register in ``batch`` that has one."""
        codes = [c for c in set(batch.obis.tolist()) if c.split(":")[-1].split(".")[1:2] == ["8"]]
        if not codes:
            return {}
        mask = np.zeros(len(batch), dtype=bool)
        for c in codes:  # few distinct codes: one vectorized comparison each (np.isin sorts object arrays)
            mask |= batch.obis == c
        pairs = set(zip(batch.meter[mask].tolist(), batch.obis[mask].tolist(), strict=True))
        missing = [k for k in pairs if k not in self._known]
        if missing:
            if len(self._known) > _MAX_ENTRIES:
                self._known.clear()
            rows = conn.execute(
                "SELECT v.meter, v.obis, extract(epoch FROM r.ts)::bigint, r.value"
                " FROM unnest(%s::text[], %s::text[]) AS v(meter, obis)"
                " JOIN amiflow.meters m ON m.name = v.meter JOIN amiflow.channels c ON c.obis = v.obis"
                " CROSS JOIN LATERAL (SELECT ts, value FROM amiflow.readings r"
                "   WHERE r.meter_id = m.id AND r.channel_id = c.id ORDER BY ts DESC LIMIT 1) r",
                ([k[0] for k in missing], [k[1] for k in missing]),
            ).fetchall()
            for k in missing:
                self._known[k] = None
            for meter, obis, ts, value in rows:
                self._known[(meter, obis)] = (int(ts), float(value))
        return {k: v for k in pairs if (v := self._known.get(k)) is not None}

    def remember(self, kept: ReadingBatch) -> None:
        """Take the values of ``kept`` (just written) for the registers already cached."""
        if not self._known:
            return
        for m, o, t, v in zip(
            kept.meter.tolist(), kept.obis.tolist(), kept.ts.tolist(), kept.value.tolist(), strict=True
        ):
            key = (m, o)
            if key in self._known:
                old = self._known[key]
                if old is None or old[0] < t:
                    self._known[key] = (t, v)
