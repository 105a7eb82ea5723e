"""Helpers for tests, benchmarks and the demo: a QoS 1 publisher, canonical payload builders, a TCP proxy.

The proxy stands in front of a PostgreSQL server so a test can make the database unreachable (``block()`` cuts
every connection and refuses new ones) without touching the shared server.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from amiflow.uri import parse_mqtt_url

__all__ = ["TcpProxy", "database_upstream", "iso", "proxied_url", "publish", "readings_payload", "wait_for"]


def iso(ts: int) -> str:
    """Epoch seconds as ISO 8601 UTC with ``Z``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def readings_payload(
    meter: str,
    start_ts: int,
    count: int,
    *,
    seq: int = 0,
    interval_s: int = 900,
    obis: str = "1-0:1.29.0",
    unit: str = "kWh",
    value: Any = None,
) -> bytes:
    """A canonical readings payload with ``count`` intervals ending at ``start_ts + interval_s * k``."""
    readings = [
        {
            "obis": obis,
            "ts": iso(start_ts + interval_s * k),
            "value": value if value is not None else round(0.05 + (k % 7) * 0.013, 3),
            "unit": unit,
        }
        for k in range(count)
    ]
    return json.dumps({"meter": meter, "seq": seq, "readings": readings}).encode()


def publish(
    url: str, messages: Iterable[tuple[str, bytes]], *, window: int = 500, rate_per_s: float | None = None
) -> int:
    """Publish (topic, payload) at QoS 1, at most ``window`` unacknowledged, waiting for every PUBACK.

    Returns the number of messages published. ``rate_per_s`` paces the stream.
    """
    target = parse_mqtt_url(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(window)
    client.max_queued_messages_set(0)
    client.connect(target.host, target.port, keepalive=30)
    client.loop_start()
    infos: list[mqtt.MQTTMessageInfo] = []
    n = 0
    t0 = time.monotonic()
    try:
        for topic, payload in messages:
            infos.append(client.publish(topic, payload, qos=1))
            n += 1
            if len(infos) >= window:
                infos.pop(0).wait_for_publish(30)
            if rate_per_s:
                ahead = n / rate_per_s - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        for info in infos:
            info.wait_for_publish(30)
    finally:
        client.disconnect()
        client.loop_stop()
    return n


class TcpProxy:
    """An asyncio TCP proxy on 127.0.0.1 (OS-assigned port) in its own thread; ``block()``/``unblock()``."""

    def __init__(self, upstream: tuple[str, int] | str) -> None:
        self.upstream = upstream
        self.port = 0
        self.blocked = False
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)

    def start(self) -> TcpProxy:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        fut.result(10)
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.blocked:
            writer.transport.abort()
            return
        try:
            if isinstance(self.upstream, str):
                up_reader, up_writer = await asyncio.open_unix_connection(self.upstream)
            else:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True)
        self._writers -= {writer, up_writer}

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()

    def block(self) -> None:
        """Cut every open connection and refuse new ones."""

        def cut() -> None:
            self.blocked = True
            for w in list(self._writers):
                w.transport.abort()

        self._loop.call_soon_threadsafe(cut)

    def unblock(self) -> None:
        self.blocked = False

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for w in list(self._writers):
                w.transport.abort()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


def database_upstream(url: str) -> tuple[str, int] | str:
    """Where a PostgreSQL URL connects: (host, port), or the Unix socket path of a socket-directory host."""
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(url)
    host, port = str(info.get("host") or "127.0.0.1"), int(info.get("port") or 5432)
    return f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port)


def proxied_url(url: str, port: int) -> str:
    """The PostgreSQL ``url`` connecting through 127.0.0.1:``port`` instead."""
    from psycopg.conninfo import make_conninfo

    return make_conninfo(url, host="127.0.0.1", port=port)


def wait_for(check: Any, timeout_s: float, every_s: float = 0.2) -> Any:
    """Poll ``check()`` until it returns a truthy value or ``timeout_s`` passes; returns the last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every_s)
