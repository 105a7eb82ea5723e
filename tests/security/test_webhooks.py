"""Signed webhooks with a timestamp and a replay window, end to end: the real webhook sink signs, the real billing
receiver verifies; a replayed, tampered, re-keyed, stale or body-only request is refused and logged. The same
verifier guards signed calls of the billing system into amiflow's API."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg_pool import ConnectionPool

from amiflow.db import Database
from amiflow.settings import Settings
from amiflow_app.api import create_app
from billing_bridge.delivery import OutboxItem, Verdict, canonical_body, sign, signature_headers, verify
from billing_bridge.receiver import Receiver, ReceiverConfig
from billing_bridge.signatures import SignatureCheck, SignatureVerifier
from billing_bridge.sinks import WebhookSink

SECRET = b"webhook-secret"


class Recording(httpx.AsyncHTTPTransport):
    """A real network transport that keeps a copy of every request it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, dict[str, str], bytes]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((str(request.url), dict(request.headers), await request.aread()))
        return await super().handle_async_request(request)


def item(n: int) -> OutboxItem:
    payload = {"bill_id": f"B{n}", "account": "ACC1", "total": f"{n}.50", "currency": "USD"}
    return OutboxItem(n, "bill", f"bill-B{n}-v1", "ACC1", payload, 0, "claim")


def deliver(url: str, items: list[OutboxItem], transport: httpx.AsyncBaseTransport) -> list[Verdict]:
    async def run() -> list[Verdict]:
        async with WebhookSink(url, SECRET, transport=transport) as sink:
            outcomes = await sink.deliver(items, asyncio.get_running_loop().time() + 30)
        return [o.verdict for o in outcomes]

    return asyncio.run(run())


@pytest.fixture
def strict() -> Iterator[Receiver]:
    with Receiver(ReceiverConfig(SECRET, require_timestamp=True, max_age_s=300)) as receiver:
        yield receiver


def test_a_replayed_or_altered_webhook_is_refused_and_logged(strict: Receiver, caplog: Any) -> None:
    caplog.set_level(logging.WARNING, logger="billing_bridge.signatures")
    recording = Recording()
    assert deliver(strict.url, [item(1), item(2)], recording) == [Verdict.DELIVERED, Verdict.DELIVERED]
    url, headers, body = recording.sent[0]
    assert verify(body, headers["x-amiflow-signature"], SECRET)  # the CONTRACT signature is still there
    assert {"x-amiflow-timestamp", "x-amiflow-nonce", "x-amiflow-signature-v2"} <= set(headers)

    def post(changed_headers: dict[str, str], content: bytes = body) -> httpx.Response:
        return httpx.post(url, content=content, headers={**headers, **changed_headers}, timeout=10)

    replay = post({})
    assert replay.status_code == 401 and b"replayed" in replay.content
    assert post({}, body.replace(b"1.50", b"9.50")).status_code == 401  # the amount changed on the way
    assert post({"idempotency-key": "bill-B9-v1"}).status_code == 401  # the same body under another key
    assert post({"x-amiflow-nonce": secrets.token_hex(16)}).status_code == 401  # a fresh nonce without the secret
    stale = signature_headers(body, SECRET, time.time() - 3600, secrets.token_hex(16), headers["idempotency-key"])
    assert b"stale" in post({k.lower(): v for k, v in stale.items()}).content  # signed right, an hour ago
    legacy = {"idempotency-key": "bill-B3-v1", "x-amiflow-signature": sign(body, SECRET), "content-type": "x"}
    only_body = httpx.post(url, content=body, headers=legacy, timeout=10)
    assert only_body.status_code == 401 and b"unsigned" in only_body.content  # strict: the timestamp is required
    snap = strict.snapshot()
    assert sorted(snap.deliveries) == ["bill-B1-v1", "bill-B2-v1"]
    assert all(d.count == 1 for d in snap.deliveries.values())  # nothing refused was stored
    assert snap.refusals == {"replayed": 1, "bad": 3, "stale": 1, "unsigned": 1}
    logged = [r.getMessage() for r in caplog.records]
    assert any("webhook refused (replayed) at /bills" in m for m in logged), logged
    assert all(SECRET.decode() not in m for m in logged)


def test_retries_within_one_second_are_not_replays(strict: Receiver) -> None:
    transport = httpx.AsyncHTTPTransport()
    assert deliver(strict.url, [item(5)], transport) == [Verdict.DELIVERED]
    assert deliver(strict.url, [item(5)], transport) == [Verdict.DELIVERED]  # a retry: a new nonce, not a replay
    assert strict.snapshot().deliveries["bill-B5-v1"].count == 2


def test_a_receiver_that_checks_only_the_body_signature_keeps_working() -> None:
    with Receiver(ReceiverConfig(SECRET)) as receiver:
        assert deliver(receiver.url, [item(7)], httpx.AsyncHTTPTransport()) == [Verdict.DELIVERED]
        body = canonical_body(item(8).payload)
        old_sender = {"Idempotency-Key": "k8", "X-Amiflow-Signature": sign(body, SECRET)}
        assert httpx.post(receiver.url + "/bills", content=body, headers=old_sender, timeout=10).status_code == 200


def test_the_window_and_the_memory_of_the_verifier() -> None:
    now = [1_800_000_000.0]
    verifier = SignatureVerifier(SECRET, max_age_s=60, clock=lambda: now[0])
    body = b'{"x":1}'
    headers = {k.lower(): v for k, v in signature_headers(body, SECRET, now[0], "nonce-0001").items()}
    assert verifier.check(body, headers) is SignatureCheck.OK
    assert verifier.check(body, headers) is SignatureCheck.REPLAYED
    now[0] += 59
    assert verifier.check(body, headers) is SignatureCheck.REPLAYED  # still inside the window: still remembered
    now[0] += 2
    assert verifier.check(body, headers) is SignatureCheck.STALE  # outside: stale, and forgotten
    future = {k.lower(): v for k, v in signature_headers(body, SECRET, now[0] + 120, "nonce-0002").items()}
    assert verifier.check(body, future) is SignatureCheck.STALE  # a sender's clock far ahead
    assert verifier.check(body, {**headers, "x-amiflow-timestamp": "abc"}) is SignatureCheck.BAD
    assert verifier.check(body, {**headers, "x-amiflow-nonce": "short"}) is SignatureCheck.BAD
    assert verifier.check(body, {}) is SignatureCheck.MISSING
    assert len(verifier._seen) == 0  # expired signatures are dropped, memory stays bounded


@pytest.fixture
def signed_api(db_url: str, db_conn: psycopg.Connection[Any]) -> Iterator[Any]:
    db_conn.execute("INSERT INTO amiflow.accounts (account, currency) VALUES ('ACC1', 'USD')")
    database = Database(db_url)
    with ConnectionPool(db_url, min_size=1, max_size=2, kwargs={"autocommit": True}) as pool:

        def build(**changes: Any) -> TestClient:
            settings = Settings(billing_secret=SECRET.decode(), **changes)
            return TestClient(create_app(pool, settings=settings, database=database))

        yield build
    database.close()


def test_signed_calls_into_the_api_cannot_be_replayed(signed_api: Any, caplog: Any) -> None:
    caplog.set_level(logging.WARNING, logger="billing_bridge.signatures")
    client = signed_api(signature_require_timestamp=True)
    paid_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    body = b'{"payment_id":"P1","account":"ACC1","amount":"12.50","currency":"USD","paid_at":"%s"}' % paid_at.encode()
    headers = {"Content-Type": "application/json", **signature_headers(body, SECRET, time.time(), secrets.token_hex(8))}
    assert client.post("/billing/v1/payments", content=body, headers=headers).status_code == 201
    replayed = client.post("/billing/v1/payments", content=body, headers=headers)
    assert replayed.status_code == 401  # not 200 "duplicate": the replay never reaches the route
    body_only = {"Content-Type": "application/json", "X-Amiflow-Signature": sign(body, SECRET)}
    assert client.post("/billing/v1/payments", content=body, headers=body_only).status_code == 401
    assert any("API request signature refused (replayed) at POST /billing/v1/payments" in r.getMessage() for r in
               caplog.records)  # fmt: skip
    compatible = signed_api()  # the default accepts a body-only signature (CONTRACT.md)
    assert compatible.post("/billing/v1/payments", content=body, headers=body_only).status_code == 200  # duplicate
