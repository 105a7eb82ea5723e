"""E-bills end to end with a real SMTP server (aiosmtpd on a free port, started here) and a real PostgreSQL:
``amiflow bill send`` queues the bill-ready e-mails of the accounts that opted in, ``amiflow bridge run --sink
email`` delivers them; the messages read back carry a valid PDF of the bill and the right amount; a 5xx refusal is a
bounce stored with its reason (and no further e-bills to that address), a 4xx is retried; and a dispatcher killed
mid-send then run again leaves one message per bill (the same Message-ID, byte-identical content)."""

from __future__ import annotations

import asyncio
import email
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from email.message import EmailMessage
from email.policy import default as default_policy
from io import BytesIO
from pathlib import Path
from typing import Any

import psycopg
import pytest

from amiflow_app.cli import main
from billing_bridge.customer.ebill import ebill_key, message_id
from tests.integration.test_bill_documents import seed_bills

aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller", reason="aiosmtpd is in the test extra")
SENDER = "Billing <billing@utility.example>"
ROOT = Path(__file__).resolve().parents[2]
CONTACTS = (
    "account,name,email,ebill\n"
    "A-M0,Jane Doe,jane@example.com,yes\n"
    "A-M1,Bob Roe,bounce@example.com,yes\n"
    "A-M2,Gray Lee,grey@example.com,yes\n"
    "A-M3,Paper Pat,pat@example.com,no\n"
)


@dataclass
class Mailbox:
    """What the SMTP server received: every DATA in order, refusing bounce@ (550) and grey@ once (451)."""

    raw: list[bytes] = field(default_factory=list)
    greylisted: set[str] = field(default_factory=set)
    slow_s: float = 0.0
    stored: threading.Event = field(default_factory=threading.Event)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.startswith("bounce@"):
            return "550 5.1.1 <bounce@example.com>: no such user"
        if address.startswith("grey@") and address not in self.greylisted:
            self.greylisted.add(address)
            return "451 4.7.1 greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.raw.append(bytes(envelope.original_content or envelope.content))
        self.stored.set()
        if self.slow_s:
            await asyncio.sleep(self.slow_s)  # the answer comes late: the sender does not know it was stored
        return "250 2.0.0 queued"

    def messages(self) -> dict[str, EmailMessage]:
        """Message-ID -> the message; a mailbox keeps one message per Message-ID."""
        out: dict[str, EmailMessage] = {}
        for data in self.raw:
            msg = email.message_from_bytes(data, policy=default_policy)
            assert isinstance(msg, EmailMessage)
            out.setdefault(str(msg["Message-ID"]), msg)
        return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = _free_port()
    controller = aiosmtpd_controller.Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


@pytest.fixture
def queued(
    db_url: str, db_conn: psycopg.Connection[Any], smtp: tuple[Mailbox, int], monkeypatch: pytest.MonkeyPatch
) -> psycopg.Connection[Any]:
    from amiflow.db.accounts import import_contacts_csv

    seed_bills(db_url, db_conn, meters=4)
    import_contacts_csv(db_conn, CONTACTS)
    for name, value in {"AMIFLOW_DATABASE_URL": db_url, "AMIFLOW_SMTP_URL": f"smtp://127.0.0.1:{smtp[1]}",
                        "AMIFLOW_MAIL_FROM": SENDER, "AMIFLOW_BRIDGE_RETRY_BASE_S": "0.2",
                        "AMIFLOW_BRIDGE_RETRY_MAX_S": "0.5"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    assert main(["bill", "send", "--period", "2024-03"]) == 0
    return db_conn


def _ebills(conn: psycopg.Connection[Any]) -> dict[str, tuple[str, str | None]]:
    rows = conn.execute("SELECT email, state, last_error FROM amiflow.v_ebills").fetchall()
    return {e: (s, err) for e, s, err in rows}


def _pdf_text(data: bytes) -> str:
    pypdf = pytest.importorskip("pypdf", reason="pypdf is in the test extra")
    return " ".join(" ".join((p.extract_text() or "").split()) for p in pypdf.PdfReader(BytesIO(data)).pages)


def test_ebills_arrive_with_the_pdf_bounces_are_recorded(
    queued: psycopg.Connection[Any], smtp: tuple[Mailbox, int], capsys: pytest.CaptureFixture[str]
) -> None:
    box, _ = smtp
    assert set(_ebills(queued)) == {"jane@example.com", "bounce@example.com", "grey@example.com"}  # pat: paper
    assert main(["bridge", "run", "--sink", "email", "--max-wait", "10"]) == 0
    states = _ebills(queued)
    assert states["jane@example.com"][0] == "delivered" and states["grey@example.com"][0] == "delivered"
    assert states["bounce@example.com"] == ("rejected", "bounce: SMTP 550 at RCPT TO: 5.1.1 <bounce@example.com>:"
                                                        " no such user")  # fmt: skip
    bounce = queued.execute("SELECT email, code, reason FROM amiflow.email_bounces").fetchall()
    assert bounce == [("bounce@example.com", 550, states["bounce@example.com"][1])]
    contact = queued.execute("SELECT email_status FROM amiflow.account_contacts WHERE account = 'A-M1'").fetchone()
    assert contact == ("bounced",)
    attempts = queued.execute("SELECT attempts FROM amiflow.v_ebills WHERE email = 'grey@example.com'").fetchone()
    assert attempts == (2,)  # greylisted (451) once, then accepted
    messages = box.messages()
    assert len(messages) == 2 == len(box.raw)
    totals = {r[0]: Decimal(r[1]) for r in queued.execute("SELECT account, total FROM amiflow.v_bills")}
    bill_ids = {r[0]: r[1] for r in queued.execute("SELECT account, bill_id FROM amiflow.v_bills")}
    for msg in messages.values():
        to = str(msg["To"])
        account = "A-M0" if "jane" in to else "A-M2"
        assert msg["Message-ID"] == message_id(ebill_key(bill_ids[account], 1), SENDER)
        due = totals[account] - (Decimal("20.00") if account == "A-M0" else 0)  # A-M0 paid 20.00 in March
        (attachment,) = list(msg.iter_attachments())
        pdf = attachment.get_content()
        assert attachment.get_content_type() == "application/pdf" and pdf.startswith(b"%PDF-")
        assert f"{due:,} USD" in _pdf_text(pdf)
        body = msg.get_body(("plain",))
        assert body is not None and f"Amount due:         {due:,} USD" in body.get_content()
    capsys.readouterr()
    assert main(["bill", "send", "--period", "2024-03"]) == 0  # again: nothing new, the bounced address is kept out
    assert "queued 0 e-bill(s) of 2024-03, 2 queued before; not sent by e-mail: 1 email bounced, 1 not opted in" in (
        capsys.readouterr().out
    )


def test_a_killed_dispatcher_leaves_one_message_per_bill(
    queued: psycopg.Connection[Any], smtp: tuple[Mailbox, int]
) -> None:
    box, _ = smtp
    queued.execute("UPDATE amiflow.account_contacts SET email = 'm1@example.com' WHERE account = 'A-M1'")
    queued.execute("UPDATE amiflow.outbox SET payload = jsonb_set(payload, '{to}', '\"m1@example.com\"')"
                   " WHERE kind = 'ebill' AND account = 'A-M1'")  # fmt: skip
    box.greylisted.add("grey@example.com")
    box.slow_s = 30.0  # every DATA is stored, then its 250 waits: the dispatcher dies not knowing
    child = subprocess.Popen(
        [sys.executable, "-m", "amiflow_app.cli", "bridge", "run", "--sink", "email", "--timeout", "8",
         "--lease", "11"],
        env={**os.environ}, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert box.stored.wait(60), "the dispatcher sent nothing"
        deadline = time.monotonic() + 10
        while len(box.raw) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    first = list(box.raw)
    assert len(first) >= 3  # every e-mail went out at least once before the kill
    assert {s for s, _ in _ebills(queued).values()} == {"pending"}  # no outcome was recorded
    box.slow_s = 0.0
    assert main(["bridge", "run", "--sink", "email", "--max-wait", "20"]) == 0  # after the lease (11 s) ran out
    assert {s for s, _ in _ebills(queued).values()} == {"delivered"}
    assert len(box.raw) >= len(first) + 3  # each e-mail went again ...
    copies: dict[str, set[bytes]] = {}
    for data in box.raw:
        msg = email.message_from_bytes(data, policy=default_policy)
        copies.setdefault(str(msg["Message-ID"]), set()).add(data)
    assert len(copies) == 3  # ... under one Message-ID per bill
    assert all(len(variants) == 1 for variants in copies.values())  # byte-identical every time


def test_serve_sends_ebills_when_smtp_is_configured(queued: psycopg.Connection[Any], smtp: tuple[Mailbox, int]) -> None:
    """``amiflow serve`` runs the e-bill dispatcher (component ``ebills``) beside the bridge once AMIFLOW_SMTP_URL
    is set: the queued e-bills arrive without an operator running ``bridge run --sink email``."""
    from amiflow.settings import load_settings
    from amiflow_app.serve import Service

    box, _ = smtp
    service = Service(load_settings(), components=["ebills"])
    service.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "jane@example.com" not in {
            e for e, (s, _) in _ebills(queued).items() if s == "delivered"
        }:
            time.sleep(0.2)
    finally:
        service.stop()
    assert _ebills(queued)["jane@example.com"][0] == "delivered"
    assert any("jane@example.com" in str(m["To"]) for m in box.messages().values())
