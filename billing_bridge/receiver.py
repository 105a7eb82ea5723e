"""A real, small HTTP billing receiver for tests, the demo and benchmarks (``python -m billing_bridge.receiver``).

It accepts ``POST .../bills``, ``.../notices``, ``.../cim/MeterReadings`` and ``.../cim/EndDeviceControls``,
verifies the signature (:class:`~billing_bridge.signatures.SignatureVerifier`: 401 when wrong, stale or replayed,
logged; a body-only ``X-Amiflow-Signature`` passes unless ``require_timestamp``), and records each delivery by its
Idempotency-Key: the first body, how often it came, the order of first arrivals, and any *different* body under a
key already seen (a conflict, answered 422 and kept in ``conflicts``). It also notes when a request for a key arrives
while another one for the same key is still being answered (``overlaps``: two senders at once).

Faults are drawn per (seed, key, attempt number) so a run is reproducible whatever the request order:
``fail_rate`` answers 503; ``timeout_rate`` holds the request ``hang_s`` seconds (past the client's timeout), then
stores it (the "processed, but the answer was lost" case); ``conflict_rate`` stores and answers 409;
``reject_rate`` answers 400 to the first attempt of a key (an operator's retry then succeeds); ``delay_max_s`` adds a
uniform random delay. ``GET /_stats`` returns the counters as JSON.

Run standalone: ``python -m billing_bridge.receiver --port 8099 --secret S [--fail-rate 0.1 ...]``, or measure the
receiver's own maximum rate with a plain concurrent httpx load (:mod:`billing_bridge.receiver_load`):
``python -m billing_bridge.receiver --max-rate 20000``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import random
import threading
from collections import Counter
from dataclasses import dataclass, field

from billing_bridge.receiver_load import measure_max_rate, spawn_receiver
from billing_bridge.signatures import SignatureVerifier

__all__ = ["Delivery", "Receiver", "ReceiverConfig", "ReceiverSnapshot", "main"]

_PATHS = ("/bills", "/notices", "/cim/MeterReadings", "/cim/EndDeviceControls")
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    409: "Conflict",
    422: "Unprocessable Content",
    503: "Service Unavailable",
}


@dataclass(frozen=True, slots=True)
class ReceiverConfig:
    """Secret and seeded fault rates of a receiver (see the module docstring)."""

    secret: bytes
    seed: int = 0
    fail_rate: float = 0.0
    timeout_rate: float = 0.0
    conflict_rate: float = 0.0
    reject_rate: float = 0.0
    delay_max_s: float = 0.0
    hang_s: float = 3.0
    max_age_s: float = 300.0
    require_timestamp: bool = False


@dataclass(frozen=True, slots=True)
class Delivery:
    """The first body stored under a key, where it was posted, and how many times it was stored."""

    key: str
    path: str
    body: bytes
    count: int


@dataclass(frozen=True, slots=True)
class ReceiverSnapshot:
    """A consistent copy of the receiver's records."""

    deliveries: dict[str, Delivery]
    order: list[str]
    conflicts: list[tuple[str, str, str]]
    overlaps: list[str]
    bad_signatures: int
    statuses: dict[int, int]
    requests: int
    refusals: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _State:
    deliveries: dict[str, Delivery] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    conflicts: list[tuple[str, str, str]] = field(default_factory=list)
    overlaps: list[str] = field(default_factory=list)
    attempts: Counter[str] = field(default_factory=Counter)
    in_flight: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    bad_signatures: int = 0
    requests: int = 0


class Receiver:
    """The receiver on 127.0.0.1 in a background thread with its own event loop (``start()`` / ``stop()``)."""

    def __init__(self, config: ReceiverConfig, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config
        self.host = host
        self.port = port
        self._state = _State()
        self._verifier = SignatureVerifier(
            config.secret, max_age_s=config.max_age_s, require_timestamp=config.require_timestamp, name="webhook"
        )
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- lifecycle
    def start(self) -> Receiver:
        self._thread = threading.Thread(target=self._run_thread, name="billing-receiver", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("billing receiver did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._thread = None

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run_thread(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        loop.run_until_complete(self.serve())
        self._ready.set()
        try:
            loop.run_forever()
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        finally:
            loop.close()

    async def serve(self) -> asyncio.Server:
        """Open the listening socket on the running loop (sets ``port`` when it was 0)."""
        self._server = await asyncio.start_server(self._connection, self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self._server

    def snapshot(self) -> ReceiverSnapshot:
        with self._lock:
            s = self._state
            return ReceiverSnapshot(
                dict(s.deliveries),
                list(s.order),
                list(s.conflicts),
                list(s.overlaps),
                s.bad_signatures,
                dict(s.statuses),
                s.requests,
                {k.value: n for k, n in self._verifier.refused.items()},
            )

    def stats(self) -> dict[str, object]:
        snap = self.snapshot()
        return {
            "requests": snap.requests,
            "keys": len(snap.deliveries),
            "stored": sum(d.count for d in snap.deliveries.values()),
            "conflicts": len(snap.conflicts),
            "overlaps": len(snap.overlaps),
            "bad_signatures": snap.bad_signatures,
            "refusals": snap.refusals,
            "statuses": {str(k): v for k, v in sorted(snap.statuses.items())},
        }

    # -- HTTP
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, _, rest = lines[0].partition(" ")
                path = rest.rsplit(" ", 1)[0].split("?", 1)[0]
                headers = {}
                for line in lines[1:]:
                    name, sep, value = line.partition(":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                status, answer = await self._handle(method, path, headers, body)
                keep = headers.get("connection", "").lower() != "close"
                writer.write(
                    f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(answer)}\r\n{'' if keep else 'Connection: close'}\r\n".encode()
                    + (b"" if keep else b"\r\n")
                    + answer
                )
                await writer.drain()
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        if method == "GET" and path == "/_stats":
            return 200, json.dumps(self.stats()).encode()
        if method != "POST" or not path.endswith(_PATHS):
            return self._count(404), b'{"error":"not found"}'
        key = headers.get("idempotency-key", "")
        if not key:
            return self._count(400), b'{"error":"Idempotency-Key missing"}'
        check = self._verifier.check(body, headers, key=key, where=path)
        if not check.accepted:
            with self._lock:
                self._state.bad_signatures += 1
            return self._count(401), b'{"error":"signature refused: %s"}' % check.value.encode()
        with self._lock:
            self._state.attempts[key] += 1
            attempt = self._state.attempts[key]
            if self._state.in_flight[key]:
                self._state.overlaps.append(key)
            self._state.in_flight[key] += 1
        try:
            return await self._faulty(key, attempt, path, body)
        finally:
            with self._lock:
                self._state.in_flight[key] -= 1

    async def _faulty(self, key: str, attempt: int, path: str, body: bytes) -> tuple[int, bytes]:
        cfg = self.config
        rng = random.Random(f"{cfg.seed}:{key}:{attempt}")
        draws = [rng.random() for _ in range(5)]
        if cfg.delay_max_s:
            await asyncio.sleep(draws[4] * cfg.delay_max_s)
        if attempt == 1 and draws[0] < cfg.reject_rate:
            return self._count(400), b'{"error":"rejected by the billing system (test fault)"}'
        if draws[1] < cfg.fail_rate:
            return self._count(503), b'{"error":"unavailable (test fault)"}'
        if draws[2] < cfg.timeout_rate:
            with self._lock:
                self._state.in_flight[key] -= 1  # the client has given up: not a concurrent send
            try:
                await asyncio.sleep(cfg.hang_s)
            finally:
                with self._lock:
                    self._state.in_flight[key] += 1
            self._store(key, path, body)
            return self._count(200), b'{"status":"stored late"}'
        status = self._store(key, path, body)
        if status == 200 and draws[3] < cfg.conflict_rate:
            return self._count(409), b'{"status":"already stored"}'
        return self._count(status), b'{"status":"stored"}' if status == 200 else b'{"error":"different body"}'

    def _store(self, key: str, path: str, body: bytes) -> int:
        with self._lock:
            old = self._state.deliveries.get(key)
            if old is None:
                self._state.deliveries[key] = Delivery(key, path, body, 1)
                self._state.order.append(key)
                return 200
            if old.body != body:
                self._state.conflicts.append(
                    (key, hashlib.sha256(old.body).hexdigest(), hashlib.sha256(body).hexdigest())
                )
                return 422
            self._state.deliveries[key] = Delivery(key, old.path, old.body, old.count + 1)
            return 200

    def _count(self, status: int) -> int:
        with self._lock:
            self._state.statuses[status] += 1
            self._state.requests += 1
        return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m billing_bridge.receiver", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--secret", default="test-secret")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fail-rate", type=float, default=0.0)
    parser.add_argument("--timeout-rate", type=float, default=0.0)
    parser.add_argument("--conflict-rate", type=float, default=0.0)
    parser.add_argument("--reject-rate", type=float, default=0.0)
    parser.add_argument("--delay-max", type=float, default=0.0, help="seconds")
    parser.add_argument("--hang", type=float, default=3.0, help="seconds a timed-out request is held")
    parser.add_argument("--max-age", type=float, default=300.0, help="replay window of signatures, seconds")
    parser.add_argument("--require-timestamp", action="store_true", help="refuse body-only signatures")
    parser.add_argument("--max-rate", type=int, metavar="N", help="measure: N requests against a child receiver")
    args = parser.parse_args(argv)
    secret = args.secret.encode()
    if args.max_rate:
        proc, url = spawn_receiver(secret)
        try:
            rate = measure_max_rate(url, secret, args.max_rate)
        finally:
            proc.terminate()
            proc.wait(10)
        print(f"RESULT receiver_max_rate requests={args.max_rate} receiver_max_per_s={rate:.0f}")
        return 0
    faults = (args.fail_rate, args.timeout_rate, args.conflict_rate, args.reject_rate, args.delay_max, args.hang)
    config = ReceiverConfig(secret, args.seed, *faults, args.max_age, args.require_timestamp)
    receiver = Receiver(config, host=args.host, port=args.port)

    async def serve_forever() -> None:
        server = await receiver.serve()
        print(f"LISTENING {receiver.url}", flush=True)
        async with server:
            await server.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
