"""Refreshing the hourly energy rollup behind ``amiflow.v_daily_energy``.

With TimescaleDB the continuous aggregate refreshes itself on its policy (and reads recent data live); on plain
PostgreSQL the materialized view is refreshed by ``amiflow serve`` periodically, after a billing run, or here.
"""

from __future__ import annotations

from typing import Any

import psycopg

__all__ = ["refresh_rollups"]


def refresh_rollups(conn: psycopg.Connection[Any]) -> None:
    """Bring ``amiflow.energy_hourly`` up to date (needs an autocommit connection outside a transaction)."""
    row = conn.execute("SELECT value FROM amiflow.storage_config WHERE key = 'backend'").fetchone()
    if row and row[0] == "timescaledb":
        conn.execute("CALL refresh_continuous_aggregate('amiflow.energy_hourly', NULL, NULL)")
        return
    populated = conn.execute(
        "SELECT ispopulated FROM pg_matviews WHERE schemaname = 'amiflow' AND matviewname = 'energy_hourly'"
    ).fetchone()
    concurrently = " CONCURRENTLY" if populated and populated[0] else ""
    conn.execute(f"REFRESH MATERIALIZED VIEW{concurrently} amiflow.energy_hourly")
