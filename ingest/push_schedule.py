"""Which readings of a push stream are stored, and interval energy from the register at interval boundaries (pure).

A push meter sends its registers every 1-10 s, far more than a head-end keeps. Of each meter's good frames the
store takes:

- the first frame of every ``sample_s`` window (default 60 s; 0 keeps every frame), with all its values;
- the first frame after each interval boundary when it comes within ``boundary_window_s`` of it. Its import
  register (1-0:1.8.0, or the sum of the tariff registers 1-0:1.8.1..9 when the meter sends no total) is the
  register at that boundary; from the registers at two consecutive boundaries comes the energy of the interval
  between them, 1-0:1.29.0 stamped at the interval's end. It is the rule the poller applies to meters without a
  load profile (docs/poller.md): an interval is never invented across a missed boundary (a link that was down, a
  register that went backwards); VEE estimates it.

The last boundary register is the cursor the poller keeps in ``amiflow.poll_state`` (``last_register_ts``,
``last_register_wh``), so a restarted reader continues the series. No clock here: times come from the frames.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

import numpy as np

from amiflow.errors import ConfigError
from amiflow.types import ReadingBatch

__all__ = ["INTERVAL_OBIS", "Boundary", "PushSchedule", "import_register_wh"]

INTERVAL_OBIS: Final = "1-0:1.29.0"
_TOTAL: Final = "1-0:1.8.0"
_TARIFF: Final = re.compile(r"^1-0:1\.8\.[1-9]$")


@dataclass(frozen=True, slots=True)
class Boundary:
    """The import register (Wh) read at an interval boundary ``ts`` (epoch seconds)."""

    ts: int
    register_wh: float


def import_register_wh(batch: ReadingBatch) -> tuple[int, float] | None:
    """(ts, Wh) of the frame's import register: 1-0:1.8.0, else the sum of the tariff registers; None without."""
    wh = batch.unit == "Wh"
    total = np.flatnonzero(wh & (batch.obis == _TOTAL))
    if len(total):
        return int(batch.ts[total[0]]), float(batch.value[total[0]])
    tariffs = np.flatnonzero(wh & np.array([bool(_TARIFF.match(str(o))) for o in batch.obis], dtype=bool))
    if not len(tariffs):
        return None
    return int(batch.ts[tariffs].max()), float(batch.value[tariffs].sum())


class PushSchedule:
    """One meter's sampling and interval derivation; :meth:`take` once per good frame, in arrival order."""

    def __init__(
        self,
        *,
        interval_s: int = 900,
        sample_s: int = 60,
        boundary_window_s: int = 60,
        last: Boundary | None = None,
    ) -> None:
        if interval_s <= 0 or sample_s < 0 or not 0 < boundary_window_s < interval_s:
            raise ConfigError(
                f"push schedule: need interval_s > 0, sample_s >= 0 and 0 < boundary_window_s < interval_s; got"
                f" {interval_s}, {sample_s}, {boundary_window_s}"
            )
        self.interval_s, self.sample_s, self.window_s = interval_s, sample_s, boundary_window_s
        self.last = last
        self.sampled_out = 0  # readings of frames not stored
        self._seen_boundary = last.ts if last is not None else None
        self._slot: int | None = None

    def take(self, batch: ReadingBatch) -> tuple[ReadingBatch, Boundary | None]:
        """The readings of one frame to store (its own, sampled, plus a derived interval) and the boundary it
        marks, if it is the first frame after one (the cursor to persist)."""
        if not len(batch):
            return batch, None
        register = import_register_wh(batch)
        ts = register[0] if register else int(batch.ts.max())
        slot = ts // self.sample_s if self.sample_s else None
        store = self.sample_s == 0 or slot != self._slot
        mark, derived = self._boundary(batch, register)
        if mark is not None:
            store = True
        if not store:
            self.sampled_out += len(batch)
            return ReadingBatch(), None
        self._slot = slot
        return (ReadingBatch.concat([batch, derived]) if len(derived) else batch), mark

    def _boundary(
        self, batch: ReadingBatch, register: tuple[int, float] | None
    ) -> tuple[Boundary | None, ReadingBatch]:
        if register is None:
            return None, ReadingBatch()
        ts, wh = register
        boundary = ts // self.interval_s * self.interval_s
        if self._seen_boundary is not None and boundary <= self._seen_boundary:
            return None, ReadingBatch()  # not the first frame of this interval (or a meter clock set back)
        self._seen_boundary = boundary
        if ts - boundary > self.window_s:
            return None, ReadingBatch()  # the boundary passed while no frame came: no register at it
        mark = Boundary(boundary, wh)
        previous, self.last = self.last, mark
        if previous is None or previous.ts != boundary - self.interval_s or wh < previous.register_wh:
            return mark, ReadingBatch()
        derived = ReadingBatch.from_columns(
            batch.meter[0], INTERVAL_OBIS, [boundary], [wh - previous.register_wh], unit="Wh", source=batch.source[0]
        )
        return mark, derived
