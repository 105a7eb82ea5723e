"""Sinks: what goes on the wire (paths, headers, signed bodies), how answers become outcomes, atomic file drops."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import httpx
import pytest

from billing_bridge.delivery import OutboxItem, Outcome, Verdict, canonical_body, verify
from billing_bridge.sinks import CimSink, FileDropSink, WebhookSink

SECRET = b"k"
BILL = {
    "bill_id": "B1",
    "version": 1,
    "account": "A1",
    "meters": ["M1", "M2"],
    "period": {
        "start": "2026-10-01",
        "end": "2026-10-31",
        "start_utc": "2026-10-01T00:00:00Z",
        "end_utc": "2026-11-01T00:00:00Z",
    },
    "determinants": {"kwh": {"peak": 12.5, "offpeak": 30}, "days": 31},
    "total": "10.10",
    "currency": "USD",
}


def item(i: int, kind: str = "bill", payload: dict[str, Any] | None = None) -> OutboxItem:
    return OutboxItem(i, kind, f"key-{i}", "A1", payload or {**BILL, "bill_id": f"B{i}"}, 1, "tok-1234567890")


def deliver(sink: Any, items: list[OutboxItem], send_before: float | None = None) -> list[Outcome]:
    async def go() -> list[Outcome]:
        async with sink:
            deadline = asyncio.get_running_loop().time() + 60 if send_before is None else send_before
            result: list[Outcome] = await sink.deliver(items, deadline)
            return result

    return asyncio.run(go())


def test_webhook_posts_signed_canonical_bodies_to_the_contract_paths() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201)

    sink = WebhookSink("https://billing.example/api/", SECRET, concurrency=4, transport=httpx.MockTransport(handler))
    notice = item(2, "payment_reminder", {"type": "payment_reminder", "account": "A1", "due": "2026-11-20"})
    outcomes = deliver(sink, [item(1), notice])
    assert sorted((o.id, o.verdict, o.code) for o in outcomes) == [
        (1, Verdict.DELIVERED, 201),
        (2, Verdict.DELIVERED, 201),
    ]
    by_key = {r.headers["Idempotency-Key"]: r for r in seen}
    assert str(by_key["key-1"].url) == "https://billing.example/api/bills"
    assert str(by_key["key-2"].url) == "https://billing.example/api/notices"
    for r, it in ((by_key["key-1"], item(1)), (by_key["key-2"], notice)):
        assert r.method == "POST"
        assert r.content == canonical_body(it.payload)
        assert r.headers["Content-Type"] == "application/json"
        assert verify(r.content, r.headers["X-Amiflow-Signature"], SECRET)


def test_answers_become_outcomes() -> None:
    answers = {
        "key-1": httpx.Response(409, text="dup"),
        "key-2": httpx.Response(400, text="account closed"),
        "key-3": httpx.Response(503, headers={"Retry-After": "7"}),
        "key-4": httpx.Response(429),
    }

    def handler(request: httpx.Request) -> httpx.Response:
        key = request.headers["Idempotency-Key"]
        if key == "key-5":
            raise httpx.ConnectError("connection refused", request=request)
        if key == "key-6":
            raise httpx.ReadTimeout("read timed out", request=request)
        return answers[key]

    sink = WebhookSink("http://127.0.0.1:1", SECRET, transport=httpx.MockTransport(handler))
    got = {o.id: o for o in deliver(sink, [item(i) for i in range(1, 7)])}
    assert got[1].verdict is Verdict.DELIVERED and got[1].code == 409
    assert got[2].verdict is Verdict.REJECTED and got[2].error == "HTTP 400: account closed"
    assert got[3].verdict is Verdict.RETRY and got[3].retry_after_s == 7.0
    assert got[4].verdict is Verdict.RETRY
    assert got[5].verdict is Verdict.RETRY and "ConnectError" in (got[5].error or "")
    assert got[6].verdict is Verdict.RETRY and "timeout" in (got[6].error or "")
    assert all(o.sent for o in got.values())


def test_a_hung_server_is_cut_off_by_the_overall_timeout() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200)

    sink = WebhookSink("http://127.0.0.1:1", SECRET, timeout_s=0.2, transport=httpx.MockTransport(handler))
    (outcome,) = deliver(sink, [item(1)])
    assert outcome.verdict is Verdict.RETRY and outcome.error == "timeout after 0.2 s"


def test_nothing_is_sent_once_the_lease_deadline_has_passed() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers["Idempotency-Key"])
        return httpx.Response(200)

    sink = WebhookSink("http://127.0.0.1:1", SECRET, transport=httpx.MockTransport(handler))
    outcomes = deliver(sink, [item(1), item(2)], send_before=0.0)
    assert calls == []
    assert all(o.verdict is Verdict.RETRY and not o.sent for o in outcomes)


def test_cim_sink_sends_meter_readings_and_end_device_controls() -> None:
    seen: dict[str, httpx.Request] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen[request.headers["Idempotency-Key"]] = request
        return httpx.Response(200)

    disconnected = {"type": "disconnected", "account": "A1", "meters": ["M1"], "ts": "2026-11-20T10:00:00Z"}
    reminder = {"type": "payment_reminder", "account": "A1"}
    sink = CimSink("http://billing", SECRET, transport=httpx.MockTransport(handler))
    reconnected = {"type": "reconnected", "account": "A1", "meter": "M9", "command_id": "c-1", "at": "2026-11-21"}
    items = [
        item(1),
        item(2, "disconnected", disconnected),
        item(3, "notice", reminder),
        item(4, "notice", reconnected),
    ]
    deliver(sink, items)
    bill = seen["key-1"]
    assert bill.url.path == "/cim/MeterReadings" and bill.headers["Content-Type"] == "application/xml"
    root = ET.fromstring(bill.content)
    ns = {"m": "http://iec.ch/TC57/2011/schema/message", "r": "http://iec.ch/TC57/2011/MeterReadings#"}
    assert root.findtext("m:Header/m:Noun", namespaces=ns) == "MeterReadings"
    assert root.findtext("m:Header/m:MessageID", namespaces=ns) == "key-1"
    meters = [e.text for e in root.findall(".//r:MeterReading/r:Meter/r:mRID", ns)]
    assert meters == ["M1", "M2"]
    refs = {e.get("ref") for e in root.findall(".//r:Readings/r:ReadingType", ns)}
    assert {"amiflow:determinant/kwh/peak", "amiflow:determinant/days", "amiflow:determinant/bill/total"} <= refs
    assert verify(bill.content, bill.headers["X-Amiflow-Signature"], SECRET)
    control = seen["key-2"]
    assert control.url.path == "/cim/EndDeviceControls"
    assert b"EndDeviceControlType" in control.content and b"amiflow:disconnected/executed" in control.content
    assert seen["key-3"].url.path == "/notices" and json.loads(seen["key-3"].content) == reminder
    # the notice engine queues kind "notice" with the notice type in the payload
    assert seen["key-4"].url.path == "/cim/EndDeviceControls"
    assert (
        b"<CorrelationID>c-1</CorrelationID>" in seen["key-4"].content and b"<mRID>M9</mRID>" in seen["key-4"].content
    )
    # byte-identical on a retry
    again: dict[str, httpx.Request] = {}

    def record(request: httpx.Request) -> httpx.Response:
        again[request.headers["Idempotency-Key"]] = request
        return httpx.Response(200)

    sink2 = CimSink("http://billing", SECRET, transport=httpx.MockTransport(record))
    deliver(sink2, [item(1)])
    assert again["key-1"].content == bill.content


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_file_drop_is_atomic_and_complete(tmp_path: Path, fmt: str) -> None:
    sink = FileDropSink(tmp_path / "drop", fmt=fmt, secret=SECRET)  # type: ignore[arg-type]
    outcomes = deliver(sink, [item(1), item(2), item(3)])
    assert all(o.verdict is Verdict.DELIVERED for o in outcomes)
    files = list((tmp_path / "drop").iterdir())
    assert len(files) == 1 and files[0].suffix == f".{fmt}" and not files[0].name.startswith(".")
    text = files[0].read_text()
    if fmt == "jsonl":
        rows = [json.loads(line) for line in text.splitlines()]
        assert [r["idempotency_key"] for r in rows] == ["key-1", "key-2", "key-3"]
        assert rows[0]["payload"] == item(1).payload
        assert verify(canonical_body(rows[0]["payload"]), rows[0]["signature"], SECRET)
    else:
        import csv
        import io

        rows = list(csv.DictReader(io.StringIO(text)))
        assert [r["idempotency_key"] for r in rows] == ["key-1", "key-2", "key-3"]
        assert verify(rows[2]["body"].encode(), rows[2]["signature"], SECRET)


def test_file_drop_failure_is_a_retry_and_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "drop"
    sink = FileDropSink(target)

    async def go() -> list[Outcome]:
        async with sink:
            target.rmdir()
            target.write_bytes(b"")  # the drop directory is gone (a file in its place): writes fail
            return await sink.deliver([item(1)], asyncio.get_running_loop().time() + 60)

    (outcome,) = asyncio.run(go())
    assert outcome.verdict is Verdict.RETRY and "file drop failed" in (outcome.error or "")
    assert [p.name for p in tmp_path.iterdir()] == ["drop"]
