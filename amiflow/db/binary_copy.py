"""PostgreSQL binary COPY encoding and decoding with numpy: whole batches, no Python object per row.

Binary COPY format (PostgreSQL docs, "COPY - Binary Format"): an 11-byte signature ``PGCOPY\\n\\377\\r\\n\\0``, int32
flags, int32 header-extension length (+ extension), then per tuple an int16 field count and per field an int32 length
(-1 = NULL) and the value in network byte order; a trailer int16 -1. Timestamps are int64 microseconds since
2000-01-01 UTC.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from amiflow.errors import StorageError

__all__ = ["PG_EPOCH_S", "decode_rows", "encode_rows", "row_dtype"]

PG_EPOCH_S = 946_684_800  # 2000-01-01T00:00:00Z in Unix seconds
HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"

_SIZES = {"i2": 2, "i4": 4, "i8": 8, "f8": 8}


def row_dtype(kinds: Sequence[tuple[str, str]]) -> np.dtype[Any]:
    """A big-endian structured dtype for fixed-width tuples of the given (name, kind) fields, kind in i2/i4/i8/f8."""
    fields: list[tuple[str, str]] = [("_n", ">i2")]
    for name, kind in kinds:
        fields.append((f"_l_{name}", ">i4"))
        fields.append((name, ">" + kind))
    return np.dtype(fields)


def encode_rows(
    kinds: Sequence[tuple[str, str]], columns: dict[str, npt.NDArray[Any]], *, chunk_rows: int = 65536
) -> Iterator[bytes]:
    """Yield the binary COPY stream of the columns in blocks of ``chunk_rows`` tuples (bounded memory)."""
    dtype = row_dtype(kinds)
    n = len(next(iter(columns.values()))) if columns else 0
    yield HEADER
    for lo in range(0, n, chunk_rows):
        hi = min(n, lo + chunk_rows)
        block = np.empty(hi - lo, dtype=dtype)
        block["_n"] = len(kinds)
        for name, kind in kinds:
            block[f"_l_{name}"] = _SIZES[kind]
            block[name] = columns[name][lo:hi]
        yield block.tobytes()
    yield TRAILER


def decode_rows(data: bytes, kinds: Sequence[tuple[str, str]]) -> npt.NDArray[Any]:
    """Parse a binary COPY TO stream of fixed-width, non-NULL fields into a structured array (native byte order)."""
    if not data.startswith(HEADER[:11]):
        raise StorageError("binary COPY stream has no PGCOPY signature")
    ext = int.from_bytes(data[15:19], "big")
    start = 19 + ext
    dtype = row_dtype(kinds)
    body = len(data) - start - len(TRAILER)
    if body < 0 or body % dtype.itemsize or data[-2:] != TRAILER:
        raise StorageError("binary COPY stream has an unexpected layout (a NULL or variable-width field?)")
    rows = np.frombuffer(data, dtype=dtype, offset=start, count=body // dtype.itemsize)
    if len(rows) and (
        np.any(rows["_n"] != len(kinds)) or any(np.any(rows[f"_l_{name}"] != _SIZES[kind]) for name, kind in kinds)
    ):
        raise StorageError("binary COPY stream has NULLs or unexpected field widths")
    out = np.empty(len(rows), dtype=[(name, kind) for name, kind in kinds])
    for name, _ in kinds:
        out[name] = rows[name]
    return out
