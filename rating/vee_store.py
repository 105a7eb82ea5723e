"""Writing a block's VEE results: the pre/post versions of every estimated or flagged interval (binary COPY into
``amiflow.vee_intervals``) and the per-meter summaries (``amiflow.vee_results``) of the period, replacing earlier
ones. The caller holds the block's transaction; nothing here commits.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg.types.json import Jsonb

from amiflow.db.binary_copy import PG_EPOCH_S
from rating.block_input import IMPORT_OBIS
from rating.vee import VeeResult

__all__ = ["store_vee"]


def store_vee(
    conn: psycopg.Connection[Any],
    run_id: int,
    meter_ids: npt.NDArray[np.int64],
    result: VeeResult,
    period: date,
    channel_obis: str = IMPORT_OBIS,
) -> int:
    """Replace the period's VEE results and pre/post intervals of the block's meters; returns interval rows."""
    ch = conn.execute("SELECT id FROM amiflow.channels WHERE obis = %s", (channel_obis,)).fetchone()
    if ch is None:
        return 0
    known = meter_ids >= 0
    ids = [int(i) for i in meter_ids[known]]
    conn.execute(
        "DELETE FROM amiflow.vee_intervals WHERE meter_id = ANY(%s) AND channel_id = %s AND period_start = %s",
        (ids, ch[0], period),
    )
    r, c = np.nonzero(result.changed & known[:, None])
    if len(r):
        cols: dict[str, npt.NDArray[Any]] = {
            "meter_id": meter_ids[r],
            "channel_id": np.full(len(r), ch[0]),
            "ts": (result.ts[c] - PG_EPOCH_S) * 1_000_000,
            "period_start": np.full(len(r), (period - _PG_EPOCH_DATE).days),
            "pre_value": result.pre[r, c],
            "post_value": result.post[r, c],
            "quality": result.flags[r, c],
            "rules": result.rule_bits[r, c],
            "method": result.method[r, c],
        }
        with (
            conn.cursor() as cur,
            cur.copy(f"COPY amiflow.vee_intervals ({', '.join(_VEE_FIELDS)}) FROM STDIN (FORMAT BINARY)") as copy,
        ):
            copy.write(_encode_nullable(cols))
    share = result.estimated_share
    rows = []
    for i in np.flatnonzero(known).tolist():
        s = result.summary(i)
        rows.append((int(meter_ids[i]), ch[0], period, run_id, s["intervals"], s["estimated"], float(share[i]),
                     result.hold[i], Jsonb(s)))  # fmt: skip
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO amiflow.vee_results (meter_id, channel_id, period_start, run_id, intervals, estimated,"
            " estimated_share, hold, summary) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (meter_id, channel_id, period_start) DO UPDATE SET run_id = EXCLUDED.run_id,"
            " intervals = EXCLUDED.intervals, estimated = EXCLUDED.estimated,"
            " estimated_share = EXCLUDED.estimated_share, hold = EXCLUDED.hold, summary = EXCLUDED.summary,"
            " validated_at = now()",
            rows,
        )
    return len(r)


_VEE_FIELDS = {
    "meter_id": "i4",
    "channel_id": "i2",
    "ts": "i8",
    "period_start": "i4",
    "pre_value": "f8",
    "post_value": "f8",
    "quality": "i4",
    "rules": "i4",
    "method": "i2",
}
_PG_EPOCH_DATE = date(2000, 1, 1)
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)


def _encode_nullable(cols: dict[str, npt.NDArray[Any]]) -> bytes:
    """Binary COPY of the vee_intervals rows; NaN in pre_value/post_value is written as NULL.

    Rows are grouped by their NULL pattern; each group is one fixed-width numpy record array (a NULL field is just
    its length -1), so no Python object is made per row. Row order does not matter to COPY.
    """
    out = [_COPY_HEADER]
    nan_pre, nan_post = np.isnan(cols["pre_value"]), np.isnan(cols["post_value"])
    for null_pre in (False, True):
        for null_post in (False, True):
            sel = (nan_pre == null_pre) & (nan_post == null_post)
            if not sel.any():
                continue
            nulls = {"pre_value": null_pre, "post_value": null_post}
            fields: list[tuple[str, str]] = [("_n", ">i2")]
            for name, kind in _VEE_FIELDS.items():
                fields.append((f"_l_{name}", ">i4"))
                if not nulls.get(name, False):
                    fields.append((name, ">" + kind))
            block = np.empty(int(sel.sum()), dtype=np.dtype(fields))
            block["_n"] = len(_VEE_FIELDS)
            for name, kind in _VEE_FIELDS.items():
                if nulls.get(name, False):
                    block[f"_l_{name}"] = -1
                else:
                    block[f"_l_{name}"] = int(kind[1])
                    block[name] = cols[name][sel]
            out.append(block.tobytes())
    out.append(b"\xff\xff")
    return b"".join(out)
