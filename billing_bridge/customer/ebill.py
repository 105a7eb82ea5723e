"""E-bills: a bill-ready notice with the bill's PDF, queued in the outbox for the customer's mailbox.

:func:`queue_ebills` puts one outbox row (kind ``ebill``, channel ``email``, key ``ebill:<bill_id>:v<version>``) per
document whose account opted in to e-bills with an address that has not bounced, in one transaction. The payload
freezes the whole document (:meth:`BillDocument.to_json`) and the time it was queued, so every attempt builds the
same message: :func:`bill_ready_message` is a pure function of the payload and the key. A bill version already
queued is not queued again (its e-mail went or is going), so re-running is safe.

The message: ``Message-ID`` ``<ebill.<first 32 hex of SHA-256(key)>@<sender's domain>>`` - the same on every retry,
so a retry after an unknown outcome (the connection dropped after DATA) is recognisable as the same message by the
receiving system; ``X-Amiflow-Idempotency-Key`` carries the key itself. ``Date`` is the queue time, the MIME boundary
is derived from the key, and the PDF is rendered deterministically, so a retry sends byte-identical content.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr, parseaddr
from typing import Any

import psycopg

from amiflow.db.accounts import list_contacts
from amiflow.db.outbox import enqueue
from amiflow.errors import ConfigError
from billing_bridge.customer.documents import document_file_stem
from billing_bridge.customer.documents_model import BillDocument
from billing_bridge.customer.documents_pdf import render_pdf
from billing_bridge.customer.documents_text import day_text, money_text
from billing_bridge.customer.payment_reference import format_reference

__all__ = ["EBILL_KIND", "QueueResult", "bill_ready_message", "ebill_key", "message_id", "queue_ebills"]

EBILL_KIND = "ebill"
_LOCK = 0x616D6965_62696C6C  # "amiebill": one queueing run at a time


def ebill_key(bill_id: str, version: int) -> str:
    """The outbox idempotency key of a bill version's e-bill."""
    return f"ebill:{bill_id}:v{version}"


@dataclass(slots=True)
class QueueResult:
    """What :func:`queue_ebills` did: queued now, already queued before, and skipped by reason."""

    queued: int = 0
    already: int = 0
    skipped: dict[str, int] = field(default_factory=dict)


def queue_ebills(conn: psycopg.Connection[Any], documents: Sequence[BillDocument], *, now: datetime) -> QueueResult:
    """Queue the bill-ready e-mail of every document whose account takes e-bills (one transaction).

    Skipped (counted by reason): ``no_account``, ``no_contact``, ``not_opted_in``, ``email_bounced``.
    """
    result = QueueResult()
    accounts = sorted({d.customer.account for d in documents if d.customer.account})
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        contacts = {c.account: c for c in list_contacts(conn, accounts)}
        keys = [ebill_key(d.bill_id, d.version) for d in documents]
        rows = conn.execute("SELECT idempotency_key FROM amiflow.outbox WHERE idempotency_key = ANY(%s)", (keys,))
        queued = {r[0] for r in rows.fetchall()}
        for doc, key in zip(documents, keys, strict=True):
            contact = contacts.get(doc.customer.account or "")
            reason = (
                "no_account" if not doc.customer.account else "no_contact" if contact is None
                else "not_opted_in" if not contact.ebill or contact.email is None
                else "email_bounced" if contact.email_status != "ok" else None
            )  # fmt: skip
            if reason is not None:
                result.skipped[reason] = result.skipped.get(reason, 0) + 1
                continue
            if key in queued:
                result.already += 1
                continue
            assert contact is not None and contact.email is not None
            payload = {
                "type": "bill_ready",
                "bill_id": doc.bill_id,
                "version": doc.version,
                "account": doc.customer.account,
                "to": contact.email,
                "name": contact.name,
                "queued_at": now.isoformat(),
                "document": doc.to_json(),
            }
            enqueue(conn, kind=EBILL_KIND, idempotency_key=key, payload=payload, account=doc.customer.account)
            result.queued += 1
    return result


def message_id(key: str, sender: str) -> str:
    """The Message-ID of the e-mail queued under ``key`` (stable: derived from the key and the sender's domain)."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "amiflow.invalid"
    return f"<ebill.{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


def _text(doc: BillDocument, name: str | None) -> str:
    s = doc.statement
    due = s.amount_due
    lines = [
        f"Dear {name or 'customer'},",
        "",
        f"your electricity bill for {day_text(doc.period_start)} - {day_text(doc.period_end)} is ready; it is attached"
        " as a PDF.",
        "",
        f"  Account:            {doc.customer.account}",
        f"  Meter:              {doc.meter}",
        f"  This bill:          {money_text(doc.total, doc.currency)}",
        f"  Amount due:         {money_text(max(due, Decimal(0)), doc.currency)}",
    ]
    if due > 0:
        lines.append(f"  Due by:             {day_text(s.due_date)}")
    lines += [f"  Payment reference:  {format_reference(doc.payment_reference)}", ""]
    if doc.estimated_share > 0:
        lines += [f"{doc.estimated_share:.1%} of this bill's energy was estimated; the bill explains why.", ""]
    lines += ["Please quote the payment reference when you pay, so we can match your payment to this bill.", ""]
    return "\n".join(lines)


def bill_ready_message(payload: dict[str, Any], key: str, sender: str) -> EmailMessage:
    """The e-mail of an outbox ``ebill`` payload: text notice plus the PDF, deterministic for a given payload."""
    if not parseaddr(sender)[1]:
        raise ConfigError(f"the e-bill sender {sender!r} is not an e-mail address (AMIFLOW_MAIL_FROM)")
    doc = BillDocument.from_json(payload["document"])
    when = datetime.fromisoformat(payload["queued_at"])
    msg = EmailMessage(policy=SMTP)
    msg["From"] = sender
    msg["To"] = formataddr((payload.get("name") or "", payload["to"]))
    due = doc.statement.amount_due
    subject = f"Your electricity bill {doc.period_start:%B %Y}: {money_text(doc.total, doc.currency)}"
    msg["Subject"] = subject + (f", due {day_text(doc.statement.due_date)}" if due > 0 else "")
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = message_id(key, sender)
    msg["X-Amiflow-Idempotency-Key"] = key
    msg.set_content(_text(doc, payload.get("name")))
    msg.add_attachment(render_pdf(doc), maintype="application", subtype="pdf",
                       filename=f"{document_file_stem(doc.bill_id)}.pdf")  # fmt: skip
    msg.set_boundary(f"=_amiflow_{hashlib.sha256(key.encode()).hexdigest()[:24]}")
    return msg
