"""Read the report's numbers from the contract views and the operational tables of any amiflow database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg

from amiflow_app.report.collections import collect_billing, collect_story
from amiflow_app.report.model import PUSH_PROTOCOLS, ReportData, exists, period_bounds

__all__ = ["collect"]


def collect(
    conn: psycopg.Connection[Any], period: str, *, meter: str | None = None, account: str | None = None
) -> ReportData:
    """Gather the report of ``period``; ``account`` makes it follow that account (its meter, bill and story)."""
    start, end = period_bounds(period)
    data = ReportData(period, datetime.now(UTC).isoformat(timespec="seconds"))
    _collect_fleet(conn, data, start, end)
    if account is not None:
        data.story = collect_story(conn, account, start, end)
        meter = meter or data.story.meter
    data.meter = meter or _most_flagged_meter(conn, start, end)
    if data.meter:
        _collect_curve(conn, data, data.meter, start, end)
    collect_billing(conn, data, start, end)
    if data.story is not None and data.story.meter:
        _collect_insights(conn, data, data.story.meter, start)
    return data


def _collect_insights(conn: psycopg.Connection[Any], data: ReportData, meter: str, start: datetime) -> None:
    """The account's usage insights and tariff comparison, as the customer would see them (usage insights)."""
    from amiflow.errors import AmiflowError
    from billing_bridge.customer import usage_insights

    try:
        data.insights = usage_insights(conn, meter, start.date(), account=data.story.account if data.story else None)
    except AmiflowError as exc:  # no intervals, no tariff: the report says so instead
        data.insights_note = str(exc)


def _collect_fleet(conn: psycopg.Connection[Any], data: ReportData, start: datetime, end: datetime) -> None:
    expected = int((end - start).total_seconds() // 900)
    polled = exists(conn, "amiflow.poll_state")
    polls = "coalesce(sum(p.polls), 0), coalesce(sum(p.successes), 0)" if polled else "0, 0"
    join = "LEFT JOIN amiflow.poll_state p ON p.meter_id = m.id" if polled else ""
    for protocol, meters, n_polls, ok in conn.execute(
        f"SELECT m.protocol, count(*), {polls} FROM amiflow.meters m {join} GROUP BY 1 ORDER BY 1"
    ).fetchall():
        push = protocol in PUSH_PROTOCOLS
        data.protocols.append((protocol, int(meters), None if push else int(n_polls), None if push else int(ok)))
    data.figures["meters_by_protocol"] = {p[0]: p[1] for p in data.protocols}
    rows = conn.execute(
        "SELECT m.name, count(r.ts)::int, %s, m.protocol FROM amiflow.meters m LEFT JOIN amiflow.readings r"
        " ON r.meter_id = m.id AND r.channel_id = 1 AND r.ts > %s AND r.ts <= %s"
        " GROUP BY m.name, m.protocol ORDER BY count(r.ts), m.name",
        (expected, start, end),
    ).fetchall()
    data.gaps = [(r[0], r[1], r[2]) for r in rows]
    for protocol in {r[3] for r in rows}:
        mine = [r for r in rows if r[3] == protocol]
        data.completeness[protocol] = sum(r[1] for r in mine) / max(1, sum(r[2] for r in mine))
    data.quarantine = [
        (str(r[0]), int(r[1]))
        for r in conn.execute("SELECT reason, count(*) FROM amiflow.v_quarantine GROUP BY 1 ORDER BY 2 DESC").fetchall()
    ]


def _most_flagged_meter(conn: psycopg.Connection[Any], start: datetime, end: datetime) -> str | None:
    """The meter VEE touched most in the period (else the one with most flagged readings): the curve worth a look."""
    if exists(conn, "amiflow.v_vee_intervals"):
        row = conn.execute(
            "SELECT meter FROM amiflow.v_vee_intervals WHERE ts > %s AND ts <= %s GROUP BY meter"
            " ORDER BY count(*) DESC, meter LIMIT 1",
            (start, end),
        ).fetchone()
        if row:
            return str(row[0])
    row = conn.execute(
        "SELECT m.name FROM amiflow.meters m JOIN amiflow.readings r ON r.meter_id = m.id AND r.channel_id = 1"
        " WHERE r.ts > %s AND r.ts <= %s GROUP BY m.name ORDER BY count(*) FILTER (WHERE r.quality <> 0) DESC,"
        " m.name LIMIT 1",
        (start, end),
    ).fetchone()
    return str(row[0]) if row else None


def _collect_curve(conn: psycopg.Connection[Any], data: ReportData, meter: str, start: datetime, end: datetime) -> None:
    data.curve = [
        (r[0], float(r[1]), list(r[2]))
        for r in conn.execute(
            "SELECT ts, value, quality FROM amiflow.v_readings WHERE meter = %s AND obis = '1-0:1.29.0'"
            " AND ts > %s AND ts <= %s ORDER BY ts",
            (meter, start, end),
        ).fetchall()
    ]
    _add_vee_flags(conn, data, meter, start, end)


def _add_vee_flags(conn: psycopg.Connection[Any], data: ReportData, meter: str, start: datetime, end: datetime) -> None:
    """Mark the curve's intervals with the VEE rules that fired and the estimation method used (pre/post kept)."""
    if not exists(conn, "amiflow.v_vee_intervals"):
        return
    found: dict[datetime, tuple[float | None, list[str]]] = {}
    for ts, post, rules, method in conn.execute(
        "SELECT ts, post_value, rules, method FROM amiflow.v_vee_intervals WHERE meter = %s AND obis = '1-0:1.29.0'"
        " AND ts > %s AND ts <= %s",
        (meter, start, end),
    ).fetchall():
        found[ts] = (post, [*rules, *([f"estimated ({method})"] if method != "none" else [])])
    if not found:
        return
    stored = {t for t, _, _ in data.curve}
    curve = [(t, v, sorted({*q, *found.get(t, (None, []))[1]})) for t, v, q in data.curve]
    # intervals that were missing and estimated appear with their estimated value
    curve += [(t, float(post), labels) for t, (post, labels) in found.items() if t not in stored and post is not None]
    data.curve = sorted(curve, key=lambda c: c[0])
