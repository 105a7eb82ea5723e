"""The run that applies the decisions: every pending relay command sent, confirmed, retried or escalated.

:func:`run_commands` sends pending commands through the meter's protocol driver (:mod:`billing_bridge.relay_drivers`),
reads the relay state back to confirm, retries with backoff, and escalates (state ``escalated`` plus a
``command_escalated`` notice for an operator) when the state never confirms. A confirmed command queues
``disconnected`` / ``reconnected`` for billing in the same transaction. A reconnect first reads the meter's control
state: a meter in a mode that needs the customer's button ends ``armed`` (the notice says so).
:func:`run_pending_commands` does the same with the drivers the settings configure.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from amiflow.db.outbox import enqueue
from amiflow.db.registry import MeterRecord, get_meter
from amiflow.errors import AmiflowError
from amiflow.settings import Settings
from billing_bridge.relay_drivers import DlmsRelayDriver, ModbusRelayDriver, MqttRelayDriver, RelayDriver

__all__ = ["CommandOutcome", "run_commands", "run_pending_commands"]

log = logging.getLogger(__name__)

_EXPECT = {"disconnect": frozenset({"disconnected"}), "reconnect": frozenset({"connected", "armed"})}


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """How one command ended: ``state`` confirmed | escalated | failed | pending (no driver for its protocol in
    this run), with the relay state read back."""

    id: uuid.UUID
    meter: str
    action: str
    state: str
    relay: str | None
    attempts: int
    error: str | None = None


async def _attempt(driver: RelayDriver, meter: MeterRecord, action: str, cid: uuid.UUID) -> str:
    if action == "reconnect":
        # Close the relay only from a known state: an armed meter waits for the customer's button.
        before = await driver.read_state(meter)
        if before in _EXPECT["reconnect"]:
            return before
    await driver.command(meter, action, cid)
    return await driver.read_state(meter)


async def run_commands(
    conn: psycopg.Connection[Any],
    drivers: Mapping[str, RelayDriver],
    *,
    clock: Any = None,
    attempts: int = 3,
    retry_delay_s: float = 1.0,
) -> list[CommandOutcome]:
    """Execute every pending command (reconnects first, then by age); ``clock()`` gives aware UTC datetimes."""
    now = clock or (lambda: datetime.now(UTC))
    rows = conn.execute(
        "SELECT id, meter, account, action FROM amiflow.meter_commands WHERE state IN ('pending', 'sent')"
        " ORDER BY action DESC, created_at"
    ).fetchall()
    out = []
    for cid, meter_name, account, action in rows:
        meter = get_meter(conn, meter_name)
        driver = drivers.get(meter.protocol) if meter else None
        if meter is None:
            _finish(conn, cid, meter_name, account, action, "failed", None, 0, "unknown meter", now())
            out.append(CommandOutcome(cid, meter_name, action, "failed", None, 0, "unknown meter"))
            continue
        if driver is None:  # no link to this protocol in this process: leave it for a run that has one
            why = f"no {meter.protocol} driver configured"
            out.append(CommandOutcome(cid, meter_name, action, "pending", None, 0, why))
            continue
        out.append(await _execute(conn, driver, meter, account, action, cid, attempts, retry_delay_s, now))
    return out


async def _execute(
    conn: psycopg.Connection[Any],
    driver: RelayDriver,
    meter: MeterRecord,
    account: str | None,
    action: str,
    cid: uuid.UUID,
    attempts: int,
    retry_delay_s: float,
    now: Any,
) -> CommandOutcome:
    relay: str | None = None
    error: str | None = None
    for n in range(1, attempts + 1):
        conn.execute("UPDATE amiflow.meter_commands SET state = 'sent', attempts = %s WHERE id = %s", (n, cid))
        try:
            relay = await _attempt(driver, meter, action, cid)
            error = None if relay in _EXPECT[action] else f"relay reads {relay!r} after {action}"
        except AmiflowError as exc:
            error = str(exc)
        if error is None:
            _finish(conn, cid, meter.name, account, action, "confirmed", relay, n, None, now())
            log.info("%s of meter %s confirmed (relay %s)", action, meter.name, relay)
            return CommandOutcome(cid, meter.name, action, "confirmed", relay, n)
        log.warning("%s of meter %s not confirmed (attempt %d): %s", action, meter.name, n, error)
        conn.execute("UPDATE amiflow.meter_commands SET last_error = %s, relay = %s WHERE id = %s", (error, relay, cid))
        if n < attempts:
            await asyncio.sleep(retry_delay_s * 2 ** (n - 1))
    _finish(conn, cid, meter.name, account, action, "escalated", relay, attempts, error, now())
    return CommandOutcome(cid, meter.name, action, "escalated", relay, attempts, error)


def _finish(
    conn: psycopg.Connection[Any],
    cid: uuid.UUID,
    meter: str,
    account: str | None,
    action: str,
    state: str,
    relay: str | None,
    attempts: int,
    error: str | None,
    at: datetime,
) -> None:
    with conn.transaction():
        conn.execute(
            "UPDATE amiflow.meter_commands SET state = %s, relay = %s, attempts = %s, last_error = %s,"
            " confirmed_at = CASE WHEN %s = 'confirmed' THEN %s ELSE confirmed_at END WHERE id = %s",
            (state, relay, attempts, error, state, at, cid),
        )
        if state == "confirmed":
            kind = "disconnected" if action == "disconnect" else "reconnected"
        elif state == "escalated":
            kind = "command_escalated"
        else:
            return
        payload = {
            "type": kind,
            "account": account,
            "meter": meter,
            "command_id": str(cid),
            "action": action,
            "relay": relay,
            "at": at.isoformat(),
            "attempts": attempts,
            "error": error,
        }
        if kind == "reconnected":
            payload["customer_action_required"] = relay == "armed"
        enqueue(conn, kind="notice", idempotency_key=f"notice:{kind}:{cid}", payload=payload, account=account)


async def run_pending_commands(
    conn: psycopg.Connection[Any], settings: Settings, *, mqtt_url: str | None
) -> list[CommandOutcome]:
    """:func:`run_commands` with the drivers the settings configure: DLMS and Modbus always, MQTT when ``mqtt_url``
    is given (one broker connection for the run); attempts and retry delay from the settings."""
    password = settings.dlms_password.get_secret_value().encode() if settings.dlms_password else None
    drivers: dict[str, RelayDriver] = {"dlms": DlmsRelayDriver(password=password), "modbus": ModbusRelayDriver()}
    async with AsyncExitStack() as stack:
        if mqtt_url:
            mqtt = MqttRelayDriver(mqtt_url, prefix=settings.mqtt_topic_prefix)
            drivers["mqtt"] = await stack.enter_async_context(mqtt)
        return await run_commands(
            conn, drivers, attempts=settings.command_attempts, retry_delay_s=settings.command_retry_s
        )
