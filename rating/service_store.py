"""Service periods (``amiflow.service_periods``): which account takes service through a meter, from move-in to
move-out (local dates, the end exclusive), and what a bill period makes of them.

A meter with service periods is billed once per period overlapping the bill period, for the overlapping days only;
a meter without any is billed for the whole period to ``amiflow.meters.account`` (as before service periods
existed). The functions only run statements on the connection they are given.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import psycopg

from amiflow.errors import ConfigError

__all__ = ["Service", "add_service", "end_service", "services_in", "split_services"]


@dataclass(frozen=True, slots=True)
class Service:
    """An account's service through a meter: [start, end) local days, ``end`` None = still served."""

    account: str
    start: date
    end: date | None = None


def add_service(conn: psycopg.Connection[Any], meter: str, account: str, start: date, end: date | None = None) -> int:
    """Record a move-in (and optionally the move-out); returns the row id. ConfigError for an unknown meter."""
    if end is not None and end <= start:
        raise ConfigError(f"service of {account} at {meter}: move-out {end} must be after move-in {start}")
    row = conn.execute(
        "INSERT INTO amiflow.service_periods (meter_id, account, start_date, end_date)"
        " SELECT id, %s, %s, %s FROM amiflow.meters WHERE name = %s RETURNING id",
        (account, start, end, meter),
    ).fetchone()
    if row is None:
        raise ConfigError(f"meter {meter!r} is not registered (see `amiflow meters list`)")
    return int(row[0])


def end_service(conn: psycopg.Connection[Any], meter: str, end: date) -> int:
    """Record the move-out of the meter's open service period; returns the rows changed (0 or 1)."""
    cur = conn.execute(
        "UPDATE amiflow.service_periods s SET end_date = %s FROM amiflow.meters m"
        " WHERE m.id = s.meter_id AND m.name = %s AND s.end_date IS NULL AND s.start_date < %s",
        (end, meter, end),
    )
    return cur.rowcount


def services_in(
    conn: psycopg.Connection[Any], meter_ids: Sequence[int], start: date, end: date
) -> dict[int, list[Service] | None]:
    """Per meter id: its service periods overlapping [start, end) in start order, [] when it has service periods
    but none in the bill period (vacant), None when it has none at all (billed to ``meters.account``)."""
    rows = conn.execute(
        "SELECT meter_id, account, start_date, end_date, start_date < %s AND (end_date IS NULL OR end_date > %s)"
        " FROM amiflow.service_periods WHERE meter_id = ANY(%s) ORDER BY meter_id, start_date, id",
        (end, start, list(meter_ids)),
    ).fetchall()
    out: dict[int, list[Service] | None] = dict.fromkeys(meter_ids)
    for meter_id, account, s, e, overlaps in rows:
        found = out.get(int(meter_id)) or []
        out[int(meter_id)] = found + ([Service(str(account), s, e)] if overlaps else [])
    return out


def split_services(services: Sequence[Service], start: date, end: date) -> list[tuple[str, date, date]] | str:
    """(account, first day, end day exclusive) of each service within [start, end), or the skip reason
    ``no_service`` (vacant the whole period) / ``overlapping_service`` (two accounts on one day)."""
    spans = [(s.account, max(s.start, start), min(s.end or end, end)) for s in services]
    spans = [x for x in spans if x[1] < x[2]]
    if not spans:
        return "no_service"
    if any(b[1] < a[2] for a, b in itertools.pairwise(spans)):
        return "overlapping_service"
    return spans
