"""Resolving meter names and OBIS codes to the ids stored in ``amiflow.readings``, through caches kept per writer.

Unknown meters resolve to -1 (the writer quarantines their readings); unknown but well-formed OBIS codes become new
channels (``amiflow.channels``, kind from the code); malformed ones resolve to -1.
"""

from __future__ import annotations

from itertools import repeat
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

from amiflow.types import channel_kind, parse_obis

__all__ = ["IdResolver"]


def _lookup_few(codes: npt.NDArray[np.object_], cache: dict[str, int]) -> npt.NDArray[np.int16]:
    """Map codes to ids, -1 where unknown. A batch holds few distinct OBIS codes: one vectorized pass per code
    (numpy's object comparison short-cuts on identity) instead of a dict lookup per row."""
    ids = np.full(len(codes), -1, dtype=np.int16)
    todo = np.ones(len(codes), dtype=bool)
    for _ in range(16):
        if not todo.any():
            return ids
        code = codes[int(todo.argmax())]
        hit = codes == code
        ids[hit] = cache.get(code, -1)
        todo &= ~hit
    rest = np.flatnonzero(todo)
    ids[rest] = np.fromiter((cache.get(c, -1) for c in codes[rest]), dtype=np.int16, count=len(rest))
    return ids


class IdResolver:
    """Meter and channel ids of one connection's batches (the caches live as long as the resolver)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        self._meters: dict[str, int] = {}
        self._channels: dict[str, int] = {}

    def meters(self, names: npt.NDArray[np.object_]) -> npt.NDArray[np.int32]:
        """Meter ids of the names, -1 for meters not registered."""
        cache = self._meters
        # map() over dict.get keeps the per-row lookup in C (no generator frame per row)
        ids = np.fromiter(map(cache.get, names, repeat(-1)), dtype=np.int32, count=len(names))
        if (ids < 0).any():
            missing = sorted({str(n) for n in names[ids < 0]})
            rows = self._conn.execute("SELECT name, id FROM amiflow.meters WHERE name = ANY(%s)", (missing,)).fetchall()
            cache.update(rows)
            ids = np.fromiter(map(cache.get, names, repeat(-1)), dtype=np.int32, count=len(names))
        return ids

    def channels(
        self, codes: npt.NDArray[np.object_], units: npt.NDArray[np.object_]
    ) -> tuple[npt.NDArray[np.int16], int, npt.NDArray[np.bool_]]:
        """(channel ids, channels created, mask of malformed codes); unknown well-formed codes are created."""
        cache = self._channels
        ids = _lookup_few(codes, cache)
        created = 0
        bad = np.zeros(len(codes), dtype=bool)
        if (ids < 0).any():
            missing_mask = ids < 0
            first_unit: dict[str, str] = {}
            for code, unit in zip(codes[missing_mask], units[missing_mask], strict=True):
                first_unit.setdefault(str(code), str(unit))
            known = dict(
                self._conn.execute(
                    "SELECT obis, id FROM amiflow.channels WHERE obis = ANY(%s)", (list(first_unit),)
                ).fetchall()
            )
            for code, unit in first_unit.items():
                if code in known:
                    continue
                try:
                    kind = channel_kind(parse_obis(code))
                except ValueError:
                    continue
                row = self._conn.execute(
                    "INSERT INTO amiflow.channels (obis, unit, kind) VALUES (%s, %s, %s)"
                    " ON CONFLICT (obis) DO UPDATE SET obis = EXCLUDED.obis RETURNING id",
                    (code, unit, kind.value),
                ).fetchone()
                assert row is not None
                known[code] = row[0]
                created += 1
            cache.update(known)
            ids = _lookup_few(codes, cache)
            bad = ids < 0
        return ids, created, bad
