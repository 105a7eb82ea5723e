"""The relay drivers: how one command reaches a meter's relay, per protocol, and how its state is read back.

A driver speaks one protocol (:class:`MqttRelayDriver` over the broker, :class:`DlmsRelayDriver` through the
disconnect control object, :class:`ModbusRelayDriver` through a relay register) and answers with the relay state,
``connected``, ``disconnected`` or ``armed`` (waiting for the customer's button). Drivers raise
:class:`~amiflow.errors.AmiflowError` subclasses for a link that fails; :mod:`billing_bridge.command_run` retries
and escalates.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any, Protocol

from amiflow.db.registry import MeterRecord

__all__ = ["DlmsRelayDriver", "ModbusRelayDriver", "MqttRelayDriver", "RelayDriver"]


class RelayDriver(Protocol):
    """Sends one relay command to a meter and reads its relay state (connected|disconnected|armed)."""

    async def command(self, meter: MeterRecord, action: str, command_id: uuid.UUID) -> str: ...

    async def read_state(self, meter: MeterRecord) -> str: ...


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
