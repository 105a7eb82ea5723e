"""An MQTT broker embedded in the process, for the demo and for tests without a broker of their own.

Two engines, one interface:

- **mosquitto** (a child process with a generated configuration on a free loopback port) when the ``mosquitto``
  binary is on PATH and ``prefer_mosquitto`` is true (the default). Mosquitto speaks MQTT 5.0 and 3.1.1 and has
  shared subscriptions (``$share/group/filter``), which the ingest worker relies on.
- **amqtt** (pure Python, in a background thread with its own event loop) otherwise. amqtt 0.12 speaks MQTT 3.1.1
  only (a v5 CONNECT is refused with "unacceptable protocol version") and has no shared subscriptions, so it suits
  3.1.1 clients such as the fleet simulator, not the MQTT 5 ingest worker. :attr:`EmbeddedBroker.mqtt5` says which
  one is running.

Both listen on 127.0.0.1 only; ``start()`` returns once the broker has answered an MQTT CONNECT::

    with EmbeddedBroker() as broker:
        print(broker.url)  # mqtt://127.0.0.1:40321
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any

from amiflow.errors import ConfigError, ConnectError

__all__ = ["EmbeddedBroker"]

log = logging.getLogger(__name__)

_START_TIMEOUT_S = 15.0
# MQTT 3.1.1 CONNECT: protocol "MQTT" level 4, clean session, keep-alive 10 s, client id "amiflow-probe".
_PROBE_CONNECT = b"\x10\x19\x00\x04MQTT\x04\x02\x00\x0a\x00\x0damiflow-probe"
_PROBE_DISCONNECT = b"\xe0\x00"


def _free_port(host: str, port: int = 0) -> int:
    """``port`` if it is free on host (any free port for 0); ConnectError if it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConnectError(f"embedded broker: cannot listen on {host}:{port}: {exc.strerror}") from exc
        bound: int = sock.getsockname()[1]
        return bound


def _answers_connect(host: str, port: int) -> bool:
    """True when an MQTT broker on host:port accepts a CONNECT (CONNACK return code 0)."""
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            sock.sendall(_PROBE_CONNECT)
            connack = sock.recv(4)
            if len(connack) == 4 and connack[0] == 0x20 and connack[3] == 0:
                sock.sendall(_PROBE_DISCONNECT)
                return True
    except OSError:
        pass
    return False


class EmbeddedBroker:
    """A loopback MQTT broker owned by this process: ``start()``, ``url``, ``stop()``, or ``with``.

    ``port=0`` picks a free port. Constructing opens nothing. ``stop()`` is idempotent and also runs on ``__exit__``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, prefer_mosquitto: bool = True) -> None:
        if not host.startswith("127.") and host not in ("::1", "localhost"):
            raise ConfigError(f"embedded broker host {host!r}: only loopback addresses (127.0.0.0/8, ::1) are allowed")
        if not 0 <= port <= 65535:
            raise ConfigError(f"embedded broker port {port}: must be 0 (any free port) to 65535")
        self.host = host
        self._requested_port = port
        self._prefer_mosquitto = prefer_mosquitto
        self._port: int | None = None
        self._engine: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._amqtt: Any = None

    # -- public -------------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``mqtt://HOST:PORT`` of the running broker."""
        if self._port is None:
            raise ConnectError("embedded broker: not started (call start() first)")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"mqtt://{host}:{self._port}"

    @property
    def port(self) -> int:
        """The TCP port the broker listens on."""
        if self._port is None:
            raise ConnectError("embedded broker: not started (call start() first)")
        return self._port

    @property
    def engine(self) -> str | None:
        """``"mosquitto"`` or ``"amqtt"`` once started, else None."""
        return self._engine

    @property
    def mqtt5(self) -> bool:
        """True when the running broker accepts MQTT 5 clients and shared subscriptions (mosquitto)."""
        return self._engine == "mosquitto"

    def start(self) -> EmbeddedBroker:
        """Start the broker; returns once it accepts MQTT connections. Raises ConnectError when it cannot start."""
        if self._port is not None:
            return self
        if self._requested_port:
            _free_port(self.host, self._requested_port)
        binary = shutil.which("mosquitto") if self._prefer_mosquitto else None
        try:
            if binary:
                self._start_mosquitto(binary)
            else:
                self._start_amqtt()
        except BaseException:
            self.stop()
            raise
        log.info("embedded MQTT broker (%s) at %s", self._engine, self.url)
        return self

    def stop(self) -> None:
        """Stop the broker and release its port, thread, process and temporary files."""
        if self._proc is not None:
            self._stop_mosquitto()
        if self._thread is not None:
            self._stop_amqtt()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None
        self._port = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- mosquitto ----------------------------------------------------------------------------------------------

    def _start_mosquitto(self, binary: str) -> None:
        self._tmpdir = tempfile.TemporaryDirectory(prefix="amiflow-mosquitto-")
        attempts = 1 if self._requested_port else 5  # a free port can be taken between probe and bind: retry
        last_error = ""
        for _ in range(attempts):
            port = _free_port(self.host, self._requested_port)
            conf = Path(self._tmpdir.name) / "mosquitto.conf"
            conf.write_text(self._mosquitto_conf(port), encoding="utf-8")
            errlog = Path(self._tmpdir.name) / "mosquitto.log"
            # stderr to a file, not a pipe: an unread pipe that fills up would block the broker
            with errlog.open("wb") as err:
                # its own session: a Ctrl-C or SIGTERM to our process group must not kill the broker before we drain
                proc = subprocess.Popen(
                    [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
                )
            if self._wait_ready(port, proc):
                self._proc, self._port, self._engine = proc, port, "mosquitto"
                return
            proc.kill()
            proc.wait(timeout=5)
            lines = errlog.read_text("utf-8", "replace").strip().splitlines()
            last_error = lines[-1] if lines else f"exit code {proc.returncode}"
        self.stop()
        raise ConnectError(f"embedded broker: mosquitto did not start on {self.host}: {last_error}")

    def _mosquitto_conf(self, port: int) -> str:
        # max_queued_messages 0 = unlimited: a slow QoS 1 subscriber (an ingest worker during a database outage)
        # must never lose messages to the default 1000-message queue limit.
        return "\n".join(
            [
                "per_listener_settings false",
                f"listener {port} {self.host}",
                "allow_anonymous true",
                "persistence false",
                "max_queued_messages 0",
                "max_queued_bytes 0",
                "max_inflight_messages 0",
                "set_tcp_nodelay true",
                "log_dest stderr",
                "log_type error",
                "",
            ]
        )

    def _wait_ready(self, port: int, proc: subprocess.Popen[bytes] | None) -> bool:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                return False
            if _answers_connect(self.host, port):
                # the process must still be alive: a CONNACK from another broker on a port it failed to bind is no proof
                time.sleep(0.05)
                return proc is None or proc.poll() is None
            time.sleep(0.05)
        return False

    def _stop_mosquitto(self) -> None:
        assert self._proc is not None
        proc, self._proc = self._proc, None
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    # -- amqtt --------------------------------------------------------------------------------------------------

    def _start_amqtt(self) -> None:
        ready: Future[int] = Future()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_amqtt, args=(ready,), name="amiflow-broker", daemon=True)
        self._thread.start()
        try:
            port = ready.result(timeout=_START_TIMEOUT_S)
        except Exception as exc:
            self.stop()
            raise ConnectError(f"embedded broker: amqtt did not start on {self.host}: {exc}") from exc
        if not self._wait_ready(port, None):
            self.stop()
            raise ConnectError(f"embedded broker: amqtt on {self.host}:{port} does not answer CONNECT")
        self._port, self._engine = port, "amqtt"

    def _run_amqtt(self, ready: Future[int]) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._amqtt_start(ready))
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    async def _amqtt_start(self, ready: Future[int]) -> None:
        from amqtt.broker import Broker

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self._requested_port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        try:
            broker = Broker(config, loop=asyncio.get_running_loop())
            await broker.start()
            server = broker._servers["default"].instance  # amqtt has no public accessor for the bound port
            port: int = server.sockets[0].getsockname()[1]
        except Exception as exc:  # supervisor: hand any startup failure to the caller's thread
            ready.set_exception(exc)
            asyncio.get_running_loop().stop()
            return
        self._amqtt = broker
        ready.set_result(port)

    def _stop_amqtt(self) -> None:
        assert self._thread is not None and self._loop is not None
        loop, thread = self._loop, self._thread
        if self._amqtt is not None and loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self._amqtt.shutdown(), loop)
            try:
                fut.result(timeout=10)
            except Exception as exc:  # supervisor: a failing shutdown must still stop the loop
                log.warning("embedded broker: amqtt shutdown failed: %s", exc)
        if loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._amqtt, self._thread, self._loop = None, None, None
