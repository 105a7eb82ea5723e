"""One collections run: charge prepaid accounts, send due reminders, decide disconnects, and (when issuing) switch.

:func:`run_collections` holds the disconnect-run lock (:func:`billing_bridge.meter_commands.exclusive`) for the whole
run, so two runs never plan or dispatch at once. Without ``issue`` it only records the policy's decisions; with it,
it issues the allowed disconnects, schedules reconnects for accounts that paid, and sends every pending command to its
meter (:func:`billing_bridge.command_run.run_pending_commands`, MQTT through ``settings.mqtt_url`` when set).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from amiflow.settings import Settings
from billing_bridge.command_run import CommandOutcome, run_pending_commands
from billing_bridge.disconnect_plan import PlanItem, plan_disconnects, schedule_reconnects
from billing_bridge.meter_commands import exclusive
from billing_bridge.policy import RuleSet
from billing_bridge.prepaid import PrepaidUpdate, update_prepaid
from billing_bridge.reminders import SentNotice, send_reminders

__all__ = ["CollectionsRun", "run_collections"]


@dataclass(frozen=True, slots=True)
class CollectionsRun:
    """What one run did: prepaid accounts charged, notices queued, decisions recorded and, when issuing, the
    reconnects scheduled and how each relay command ended."""

    prepaid_updates: tuple[PrepaidUpdate, ...]
    notices: tuple[SentNotice, ...]
    decisions: tuple[PlanItem, ...]
    reconnects: tuple[uuid.UUID, ...] = ()
    commands: tuple[CommandOutcome, ...] = ()


def run_collections(
    conn: psycopg.Connection[Any],
    ruleset: RuleSet,
    settings: Settings,
    *,
    now: datetime,
    forecast_c: tuple[float, float] | None,
    issue: bool,
) -> CollectionsRun:
    """Run the collections steps as of ``now``; ``forecast_c`` is the (min, max) forecast for the next 24 h or None
    (weather unknown). Blocking: the relay commands run on a private event loop."""
    with exclusive(conn):
        charged = update_prepaid(conn, ruleset, now=now)
        sent = send_reminders(conn, ruleset, now=now)
        items = plan_disconnects(conn, ruleset, now=now, forecast_c=forecast_c, issue=issue)
        if not issue:
            return CollectionsRun(tuple(charged), tuple(sent), tuple(items))
        reconnects = schedule_reconnects(conn, ruleset, now=now, within_s=settings.reconnect_within_s)
        outcomes = asyncio.run(run_pending_commands(conn, settings, mqtt_url=settings.mqtt_url))
    return CollectionsRun(tuple(charged), tuple(sent), tuple(items), tuple(reconnects), tuple(outcomes))
