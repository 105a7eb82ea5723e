"""Writing a block's bills: a new version only when the content changed (by content hash), the previous version
superseded, with its lines, determinants and one outbox row per new version (``bill:<bill_id>:v<n>``).
The caller holds the block's transaction; nothing here commits.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from amiflow.db.outbox import enqueue_many

__all__ = ["bill_hash", "store_bills"]


def bill_hash(bill: dict[str, Any]) -> str:
    """SHA-256 of the bill's canonical JSON without its version: equal hashes = the same bill content."""
    body = {k: v for k, v in bill.items() if k != "version"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _flat(tree: dict[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for k, v in tree.items():
        if isinstance(v, dict):
            yield from _flat(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def store_bills(conn: psycopg.Connection[Any], run_id: int, bills: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Insert the bills whose content is new (version 1) or changed (previous version + 1, the old one superseded),
    with their lines, determinants and outbox rows. Returns counts: new, revised, unchanged.

    The bills' ``version`` field is set here. Call inside the block's transaction.
    """
    counts = {"new": 0, "revised": 0, "unchanged": 0}
    if not bills:
        return counts
    ids = [b["bill_id"] for b in bills]
    latest = {
        r[0]: (int(r[1]), str(r[2]))
        for r in conn.execute(
            "SELECT DISTINCT ON (bill_id) bill_id, version, content_hash FROM amiflow.bills WHERE bill_id = ANY(%s)"
            " ORDER BY bill_id, version DESC",
            (ids,),
        ).fetchall()
    }
    fresh: list[tuple[dict[str, Any], str]] = []
    for bill in bills:
        digest = bill_hash(bill)
        prev = latest.get(bill["bill_id"])
        if prev is not None and prev[1] == digest:
            bill["version"] = prev[0]
            counts["unchanged"] += 1
            continue
        bill["version"] = 1 if prev is None else prev[0] + 1
        counts["new" if prev is None else "revised"] += 1
        fresh.append((bill, digest))
    if not fresh:
        return counts
    superseded = [b["bill_id"] for b, _ in fresh if b["version"] > 1]
    if superseded:
        conn.execute(
            "UPDATE amiflow.bills SET status = 'superseded' WHERE bill_id = ANY(%s) AND status = 'issued'",
            (superseded,),
        )
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO amiflow.bills (bill_id, version, run_id, meter, account, period_start, period_end, tariff_id,"
            " tariff_version, total, currency, estimated_share, content_hash, body)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            [
                (
                    b["bill_id"],
                    b["version"],
                    run_id,
                    b["meters"][0],
                    b["account"],
                    b["period"]["start"],
                    b["period"]["end"],
                    b["tariff"]["id"],
                    b["tariff"]["version"],
                    Decimal(b["total"]),
                    b["currency"],
                    b["estimated_share"],
                    digest,
                    Jsonb(b),
                )
                for b, digest in fresh
            ],
            returning=True,
        )
        pks: list[int] = []
        while True:
            row = cur.fetchone()
            assert row is not None
            pks.append(int(row[0]))
            if not cur.nextset():
                break
    with conn.cursor() as cur:
        with cur.copy(
            "COPY amiflow.bill_lines (bill, line_no, code, description, quantity, unit, rate, amount) FROM STDIN"
        ) as copy:
            for pk, (b, _) in zip(pks, fresh, strict=True):
                for n, line in enumerate(b["lines"]):
                    copy.write_row((pk, n, line["code"], line["description"], line["quantity"], line["unit"],
                                    line["rate"], line["amount"]))  # fmt: skip
        with cur.copy("COPY amiflow.bill_determinants (bill, name, value) FROM STDIN") as copy:
            for pk, (b, _) in zip(pks, fresh, strict=True):
                for name, value in _flat(b["determinants"]):
                    copy.write_row((pk, name, str(value)))
    items = [(f"bill:{b['bill_id']}:v{b['version']}", b, b["account"]) for b, _ in fresh]
    enqueue_many(conn, kind="bill", items=items)
    return counts
