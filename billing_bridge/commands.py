"""Disconnect planning and relay command dispatch: the only path to a meter's relay.

1. :func:`plan_disconnects` evaluates every overdue account (and every prepaid account at zero) against the policy
   (:mod:`billing_bridge.policy`), records each decision, allowed or blocked, in ``amiflow.disconnect_decisions``
   and, when asked to issue, creates a ``disconnect`` command for each active meter of an allowed account in the same
   transaction. The database refuses a disconnect command without an allowing decision of its account (trigger in
   migration 0007). A debt that is due for disconnection but blocked by a protection, calendar, weather, bill-quality
   or rate rule sends one ``disconnect_blocked`` notice per debt and set of blocking rules.
2. :func:`schedule_reconnects` creates a ``reconnect`` command, due within ``reconnect_within_s``, for each meter
   disconnected by amiflow whose account no longer has arrears (or whose prepaid balance is positive again).
3. :func:`run_commands` sends pending commands through the meter's protocol driver (:class:`MqttRelayDriver`,
   :class:`DlmsRelayDriver`, :class:`ModbusRelayDriver`), reads the relay state back to confirm, retries with
   backoff, and escalates (state ``escalated`` plus a ``command_escalated`` notice for an operator) when the state
   never confirms. A confirmed command queues ``disconnected`` / ``reconnected`` for billing in the same transaction.
   A reconnect first reads the meter's control state: a meter in a mode that needs the customer's button ends
   ``armed`` (the notice says so).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Jsonb

from amiflow.db.outbox import enqueue
from amiflow.db.registry import MeterRecord, get_meter
from amiflow.errors import AmiflowError, PolicyBlocked
from billing_bridge.policy import Conditions, Decision, DisconnectCase, RuleSet, evaluate, holidays_for
from billing_bridge.prepaid import prepaid_positions
from billing_bridge.reminders import disconnect_cases, score_accounts

__all__ = [
    "CommandOutcome",
    "exclusive",
    "DlmsRelayDriver",
    "ModbusRelayDriver",
    "MqttRelayDriver",
    "PlanItem",
    "RelayDriver",
    "issue_command",
    "plan_disconnects",
    "run_commands",
    "schedule_reconnects",
]

log = logging.getLogger(__name__)

#: Rules that only say "not yet" (the debt is not due for disconnection): no disconnect_blocked notice for them.
_NOT_YET = frozenset({"debt_threshold", "days_past_due", "notice_ladder", "notice_period"})
_RUN_LOCK = 0x616D69646973  # "amidis"
_EXPECT = {"disconnect": frozenset({"disconnected"}), "reconnect": frozenset({"connected", "armed"})}


@dataclass(frozen=True, slots=True)
class PlanItem:
    """One evaluated account/meter: the recorded decision's id and the decision; ``command_id`` when issued."""

    account: str
    meter: str
    decision_id: int
    decision: Decision
    case: DisconnectCase
    command_id: uuid.UUID | None = None


def _recent_disconnects(conn: psycopg.Connection[Any], now: datetime) -> tuple[int, dict[str | None, int]]:
    rows = conn.execute(
        "SELECT m.feeder, count(*) FROM amiflow.meter_commands c LEFT JOIN amiflow.meters m ON m.name = c.meter"
        " WHERE c.action = 'disconnect' AND c.created_at > %s AND c.state <> 'failed' GROUP BY m.feeder",
        (now - timedelta(hours=1),),
    ).fetchall()
    per_feeder = {f: int(n) for f, n in rows}
    return sum(per_feeder.values()), per_feeder


def _disconnected_meters(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """Meter -> state of its latest command when that is a disconnect not failed (already handled)."""
    rows = conn.execute(
        "SELECT DISTINCT ON (meter) meter, action, state FROM amiflow.meter_commands ORDER BY meter, created_at DESC"
    ).fetchall()
    return {m: s for m, a, s in rows if a == "disconnect" and s != "failed"}


def _account_meters(conn: psycopg.Connection[Any]) -> dict[str, list[tuple[str, str | None]]]:
    out: dict[str, list[tuple[str, str | None]]] = {}
    for name, account, feeder in conn.execute(
        "SELECT name, account, feeder FROM amiflow.meters WHERE account IS NOT NULL AND status = 'active' ORDER BY name"
    ).fetchall():
        out.setdefault(account, []).append((name, feeder))
    return out


def _inputs(case: DisconnectCase, cond: Conditions) -> dict[str, Any]:
    return {
        "overdue_amount": str(case.overdue_amount),
        "days_past_due": case.days_past_due,
        "notices_sent": {t: at.isoformat() for t, at in case.notices_sent.items()},
        "protected": sorted(case.protected),
        "open_dispute": case.open_dispute,
        "payment_plan": case.payment_plan,
        "estimated_share": case.estimated_share,
        "feeder": case.feeder,
        "prepaid": case.prepaid,
        "now": cond.now.isoformat(),
        "forecast_min_c": cond.forecast_min_c,
        "forecast_max_c": cond.forecast_max_c,
        "disconnects_last_hour": cond.disconnects_last_hour,
        "feeder_disconnects_last_hour": cond.feeder_disconnects_last_hour,
    }


def plan_disconnects(
    conn: psycopg.Connection[Any],
    ruleset: RuleSet,
    *,
    now: datetime,
    forecast_c: tuple[float, float] | None,
    issue: bool = False,
) -> list[PlanItem]:
    """Evaluate, record every decision, and (``issue``) create the disconnect commands of the allowed ones.

    ``forecast_c`` is the (minimum, maximum) forecast temperature for the next 24 hours, or None when unknown.
    """
    local_year = now.astimezone(ZoneInfo(ruleset.timezone)).year
    holidays = holidays_for(ruleset, (local_year, local_year + 1))
    total, per_feeder = _recent_disconnects(conn, now)
    handled = _disconnected_meters(conn)
    meters = _account_meters(conn)
    out = []
    for base in disconnect_cases(conn, ruleset, now):
        for meter, feeder in meters.get(base.account, []):
            if meter in handled:
                continue
            case = dataclasses.replace(base, meter=meter, feeder=feeder)
            cond = Conditions(
                now=now,
                forecast_min_c=forecast_c[0] if forecast_c else None,
                forecast_max_c=forecast_c[1] if forecast_c else None,
                holidays=holidays,
                disconnects_last_hour=total,
                feeder_disconnects_last_hour=per_feeder.get(feeder, 0),
            )
            decision = evaluate(ruleset, case, cond)
            item = _record(conn, ruleset, case, cond, decision, issue=issue)
            if issue and decision.allowed:
                total += 1
                per_feeder[feeder] = per_feeder.get(feeder, 0) + 1
            out.append(item)
    return out


def _record(
    conn: psycopg.Connection[Any], rs: RuleSet, case: DisconnectCase, cond: Conditions, d: Decision, *, issue: bool
) -> PlanItem:
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO amiflow.disconnect_decisions (decided_at, account, meter, debt_ref, ruleset_id,"
            " ruleset_version, allowed, deciding_rules, results, inputs) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
            " RETURNING id",
            (
                cond.now,
                case.account,
                case.meter,
                case.debt_ref,
                d.ruleset_id,
                d.ruleset_version,
                d.allowed,
                list(d.deciding_rules),
                Jsonb(d.as_json()),
                Jsonb(_inputs(case, cond)),
            ),
        ).fetchone()
        assert row is not None
        decision_id = int(row[0])
        command_id = None
        if issue and d.allowed and case.meter is not None:
            command_id = issue_command(
                conn, case.meter, "disconnect", account=case.account, decision_id=decision_id, now=cond.now
            )
        blocking = set(d.blocking)
        if blocking and not (blocking & _NOT_YET):
            rules = "+".join(sorted(blocking))
            payload = {
                "type": "disconnect_blocked",
                "account": case.account,
                "meter": case.meter,
                "debt_ref": case.debt_ref,
                "rules": sorted(blocking),
                "rule": sorted(blocking)[0],
                "detail": [r.detail for r in d.results if r.blocks],
                "ruleset": {"id": d.ruleset_id, "version": d.ruleset_version},
                "decided_at": cond.now.isoformat(),
                "decision_id": decision_id,
            }
            key = f"notice:disconnect_blocked:{case.account}:{case.meter}:{case.debt_ref}:{rules}"
            if not conn.execute("SELECT 1 FROM amiflow.outbox WHERE idempotency_key = %s", (key,)).fetchone():
                enqueue(conn, kind="notice", idempotency_key=key, payload=payload, account=case.account)
    return PlanItem(case.account, case.meter or "", decision_id, d, case, command_id)


@contextmanager
def exclusive(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """Hold the disconnect-run lock (a session advisory lock) so two runs never plan or dispatch at once."""
    conn.execute("SELECT pg_advisory_lock(%s)", (_RUN_LOCK,))
    try:
        yield
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_RUN_LOCK,))


def issue_command(
    conn: psycopg.Connection[Any],
    meter: str,
    action: str,
    *,
    account: str | None,
    now: datetime,
    decision_id: int | None = None,
    due_by: datetime | None = None,
) -> uuid.UUID:
    """Create a pending command. A disconnect needs ``decision_id`` of an allowing decision of ``account``:
    otherwise PolicyBlocked (the database enforces the same)."""
    if action == "disconnect":
        row = conn.execute(
            "SELECT allowed, account FROM amiflow.disconnect_decisions WHERE id = %s", (decision_id,)
        ).fetchone()
        if decision_id is None or row is None or not row[0] or row[1] != account:
            raise PolicyBlocked(f"disconnect of meter {meter} refused: no allowing policy decision", ("no_decision",))
    cid = uuid.uuid4()
    conn.execute(
        "INSERT INTO amiflow.meter_commands (id, meter, account, action, decision_id, created_at, due_by)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (cid, meter, account, action, decision_id, now, due_by),
    )
    return cid


def schedule_reconnects(
    conn: psycopg.Connection[Any], ruleset: RuleSet, *, now: datetime, within_s: int
) -> list[uuid.UUID]:
    """A reconnect for each meter amiflow disconnected whose account has no arrears left (prepaid: credit again)."""
    today = now.astimezone(ZoneInfo(ruleset.timezone)).date()
    arrears, _ = score_accounts(conn, ruleset, today)
    prepaid = {p.account: p.balance for p in prepaid_positions(conn)}
    rows = conn.execute(
        "SELECT DISTINCT ON (meter) meter, account, action, state FROM amiflow.meter_commands"
        " ORDER BY meter, created_at DESC"
    ).fetchall()
    out = []
    for meter, account, action, state in rows:
        if action != "disconnect" or state != "confirmed":
            continue
        if account in prepaid:
            cleared = prepaid[account] > 0
        else:
            a = arrears.get(account)
            cleared = a is None or a.overdue_amount <= Decimal(0)
        if cleared:
            with conn.transaction():
                out.append(
                    issue_command(
                        conn, meter, "reconnect", account=account, now=now, due_by=now + timedelta(seconds=within_s)
                    )
                )
    return out


# -- execution ------------------------------------------------------------------------------------------------------


class RelayDriver(Protocol):
    """Sends one relay command to a meter and reads its relay state (connected|disconnected|armed)."""

    async def command(self, meter: MeterRecord, action: str, command_id: uuid.UUID) -> str: ...

    async def read_state(self, meter: MeterRecord) -> str: ...


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
    from datetime import UTC

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


# -- protocol drivers -----------------------------------------------------------------------------------------------


class MqttRelayDriver:
    """Relay commands over MQTT (CONTRACT.md): publish ``{prefix}/{meter}/cmd`` QoS 1, await the answer with the same
    id on ``{prefix}/{meter}/cmd/result``. The state is read back with a ``read`` command. Use as an async context
    manager (it holds one broker connection)."""

    def __init__(self, mqtt_url: str, *, prefix: str = "ami/v1", timeout_s: float = 10.0) -> None:
        self._url, self._prefix, self._timeout_s = mqtt_url, prefix.rstrip("/"), timeout_s
        self._client: Any = None
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __aenter__(self) -> MqttRelayDriver:
        from urllib.parse import urlsplit

        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        from amiflow.errors import ConnectError

        parts = urlsplit(self._url)
        self._loop = asyncio.get_running_loop()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"amiflow-cmd-{uuid.uuid4().hex[:8]}")
        if parts.username:
            client.username_pw_set(parts.username, parts.password)
        if parts.scheme == "mqtts":
            client.tls_set()
        client.on_message = self._on_message
        subscribed = asyncio.Event()
        loop = self._loop

        def on_subscribe(*_: Any) -> None:
            loop.call_soon_threadsafe(subscribed.set)

        client.on_subscribe = on_subscribe
        try:
            client.connect(parts.hostname or "127.0.0.1", parts.port or (8883 if parts.scheme == "mqtts" else 1883))
        except OSError as exc:
            raise ConnectError(f"MQTT broker {parts.hostname}:{parts.port}: {exc}") from exc
        client.loop_start()
        client.subscribe(f"{self._prefix}/+/cmd/result", qos=1)
        self._client = client
        try:
            await asyncio.wait_for(subscribed.wait(), self._timeout_s)
        except TimeoutError:
            await self.__aexit__()
            raise ConnectError(f"MQTT broker {parts.hostname}:{parts.port}: no SUBACK") from None
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        import json

        try:
            body = json.loads(msg.payload)
            fut = self._waiting.get(str(body.get("id")))
        except (ValueError, AttributeError):
            return  # not ours / not JSON: an answer we never asked for
        if fut is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(_resolve, fut, body)

    async def _call(self, meter: MeterRecord, action: str, cid: uuid.UUID) -> dict[str, Any]:
        import json
        from datetime import UTC

        from amiflow.errors import ProtocolError, ReadTimeout

        if self._client is None or self._loop is None:
            raise RuntimeError("use MqttRelayDriver as 'async with'")
        fut: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        self._waiting[str(cid)] = fut
        body = {"id": str(cid), "action": action, "issued_at": datetime.now(UTC).isoformat()}
        try:
            self._client.publish(f"{self._prefix}/{meter.name}/cmd", json.dumps(body), qos=1)
            answer = await asyncio.wait_for(fut, self._timeout_s)
        except TimeoutError:
            raise ReadTimeout(f"meter {meter.name}: no answer to {action} within {self._timeout_s} s") from None
        finally:
            self._waiting.pop(str(cid), None)
        if answer.get("status") != "ok":
            raise ProtocolError(f"meter {meter.name}: {action} {answer.get('status')} (relay {answer.get('relay')})")
        return answer

    async def command(self, meter: MeterRecord, action: str, command_id: uuid.UUID) -> str:
        return str((await self._call(meter, action, command_id)).get("relay"))

    async def read_state(self, meter: MeterRecord) -> str:
        return str((await self._call(meter, "read", uuid.uuid4())).get("relay"))


def _resolve(fut: asyncio.Future[dict[str, Any]], body: dict[str, Any]) -> None:
    if not fut.done():
        fut.set_result(body)


def _dlms_relay(output_state: bool, control_state: int) -> str:
    if output_state:
        return "connected"
    return "armed" if control_state == 2 else "disconnected"


class DlmsRelayDriver:
    """Disconnect control (class 70, 0-0:96.3.10) through ``protocols.dlms.DlmsClient``: remote_disconnect /
    remote_reconnect, then output_state and control_state read back (2 = ready_for_reconnection = armed)."""

    def __init__(self, *, password: bytes | None = None, timeout_s: float = 5.0) -> None:
        self._password, self._timeout_s = password, timeout_s

    def _client(self, meter: MeterRecord) -> Any:
        from amiflow.uri import parse_meter_uri
        from protocols.dlms import DlmsClient  # type: ignore[import-not-found,unused-ignore]

        return DlmsClient(parse_meter_uri(meter.uri or ""), password=self._password, timeout_s=self._timeout_s)

    async def command(self, meter: MeterRecord, action: str, command_id: uuid.UUID) -> str:
        async with self._client(meter) as c:
            await (c.disconnect() if action == "disconnect" else c.reconnect())
            out, control, _mode = await c.read_disconnect_state()
        return _dlms_relay(bool(out), int(control))

    async def read_state(self, meter: MeterRecord) -> str:
        async with self._client(meter) as c:
            out, control, _mode = await c.read_disconnect_state()
        return _dlms_relay(bool(out), int(control))


class ModbusRelayDriver:
    """The relay register of Modbus maps that have one, through ``protocols.modbus.ModbusMeterClient``
    (``write_relay(closed: bool)`` / ``read_relay() -> bool``); a map without a relay is a ConfigError."""

    def __init__(self, *, timeout_s: float = 3.0) -> None:
        self._timeout_s = timeout_s

    def _client(self, meter: MeterRecord) -> Any:
        from amiflow.uri import parse_meter_uri
        from protocols.modbus import ModbusMeterClient  # type: ignore[import-not-found,unused-ignore]

        return ModbusMeterClient(parse_meter_uri(meter.uri or ""), timeout_s=self._timeout_s)

    async def command(self, meter: MeterRecord, action: str, command_id: uuid.UUID) -> str:
        from amiflow.errors import ConfigError

        async with self._client(meter) as c:
            if not hasattr(c, "write_relay"):
                raise ConfigError(f"meter {meter.name}: its Modbus map has no relay register")
            await c.write_relay(action == "reconnect")
            closed = await c.read_relay()
        return "connected" if closed else "disconnected"

    async def read_state(self, meter: MeterRecord) -> str:
        from amiflow.errors import ConfigError

        async with self._client(meter) as c:
            if not hasattr(c, "read_relay"):
                raise ConfigError(f"meter {meter.name}: its Modbus map has no relay register")
            return "connected" if await c.read_relay() else "disconnected"
