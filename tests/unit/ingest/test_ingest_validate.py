"""Edge validation: the quarantine reasons, the flags, and the register monotonicity rule."""

from __future__ import annotations

import numpy as np

from amiflow.types import QualityFlag, ReadingBatch
from ingest.validate import Bounds, validate

NOW = 1_800_000_000


def batch(rows: list[tuple[str, str, int, float, str]]) -> ReadingBatch:
    m, o, t, v, u = zip(*rows, strict=True)
    return ReadingBatch.from_columns(
        np.array(m, dtype=object), np.array(o, dtype=object), t, v, unit=np.array(u, dtype=object)
    )


def test_reasons() -> None:
    b = batch(
        [
            ("M", "1-0:1.29.0", NOW - 900, 100.0, "Wh"),
            ("M", "1-0:1.29.0", NOW + 301, 100.0, "Wh"),
            ("M", "1-0:1.29.0", NOW - 401 * 86400, 100.0, "Wh"),
            ("M", "1-0:2.29.0", NOW - 1800, -1.0, "Wh"),
            ("M", "1-0:1.29.0", NOW - 2700, 6e7, "Wh"),
            ("M", "1-0:32.7.0", NOW - 900, 2e6, "V"),
            ("M", "1-0:32.7.0", NOW - 900, 230.0, "V"),
            ("M", "1-0:1.7.0", NOW - 900, -5000.0, "W"),  # negative power (export) is fine
        ]
    )
    v = validate(b, now_ts=NOW, bounds=Bounds())
    assert v.reason.tolist() == ["", "future_ts", "too_old", "negative_interval", "implausible", "implausible", "", ""]
    assert v.keep.tolist() == [True, False, False, False, False, False, True, True]


def test_register_going_back_is_flagged_against_batch_and_store() -> None:
    b = batch(
        [
            ("A", "1-0:1.8.0", NOW - 2700, 500.0, "Wh"),
            ("A", "1-0:1.8.0", NOW - 900, 450.0, "Wh"),  # back against its predecessor in the batch
            ("A", "1-0:1.8.0", NOW - 1800, 600.0, "Wh"),  # out of order in the message: sorted by time first
            ("B", "1-0:1.8.0", NOW - 900, 90.0, "Wh"),  # back against the stored value
            ("C", "1-0:1.8.0", NOW - 900, 3.0, "Wh"),  # a wrap: 99,990 -> 3
            ("D", "1-0:1.8.0", NOW - 900, 1.0, "Wh"),  # older stored value is newer than this one: not judged
        ]
    )
    last = {
        ("B", "1-0:1.8.0"): (NOW - 1800, 100.0),
        ("C", "1-0:1.8.0"): (NOW - 1800, 99_990.0),
        ("D", "1-0:1.8.0"): (NOW, 50.0),
    }
    v = validate(b, now_ts=NOW, bounds=Bounds(), last_register=last)
    assert v.keep.all()
    back = (v.quality & int(QualityFlag.NON_MONOTONIC)) != 0
    wrap = (v.quality & int(QualityFlag.ROLLOVER)) != 0
    assert back.tolist() == [False, True, False, True, False, False]
    assert wrap.tolist() == [False, False, False, False, True, False]
    assert v.flagged == {"non_monotonic": 2, "rollover": 1}


def test_empty_batch() -> None:
    v = validate(ReadingBatch(), now_ts=NOW, bounds=Bounds())
    assert len(v.reason) == 0 and v.flagged == {}
