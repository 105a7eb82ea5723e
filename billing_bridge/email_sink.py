"""The e-mail sink: e-bills (outbox channel ``email``) to the customers' mailboxes over SMTP, with aiosmtplib (MIT).

A sink like the others (:mod:`billing_bridge.sinks`): ``deliver(items, send_before) -> outcomes``, every failure an
outcome, no new message started after ``send_before``. A claimed batch is spread over ``connections`` SMTP sessions
that each send their share one message after the other; each message is built from its stored payload by
:func:`billing_bridge.customer.ebill.bill_ready_message` (the same bytes on every attempt).

How an answer settles the outbox row:

- 250 to the message: delivered (``response_code`` 250);
- 5xx to RCPT TO or DATA: the receiving side refuses this message for good - a **bounce**: rejected with
  ``last_error`` ``bounce: SMTP <code> at <stage>: <text>``; the database records it in ``amiflow.email_bounces``
  and marks the account's address bounced (migration 0012), so no further e-bills go to it until it is changed;
- 4xx to RCPT TO or DATA (greylisting, a full mailbox, a busy server): retried with the bridge's backoff;
- no connection, a refused login or sender, a timeout or a dropped connection: retried. A drop after DATA leaves
  the outcome unknown: the retry carries the same Message-ID, so the receiving system can tell it is the same mail.

``smtp://host:port`` is plain SMTP (a relay on the same host or network), ``smtp+starttls://`` upgrades with
STARTTLS, ``smtps://`` is TLS from the start (port 465); user and password in the URL log in. Certificates are
verified (certifi's CA bundle).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import parseaddr
from types import TracebackType
from urllib.parse import unquote, urlsplit

import aiosmtplib
import certifi

from amiflow.errors import ConfigError
from amiflow.settings import Settings
from billing_bridge.customer.ebill import bill_ready_message
from billing_bridge.delivery import OutboxItem, Outcome, Verdict

__all__ = ["EmailSink", "SmtpConfig", "make_email_sink", "smtp_verdict"]

_LEASE_LOST = "not sent: the claim's lease would expire before the message could be sent"
_PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """Where e-bills are submitted and who sends them."""

    host: str
    port: int
    security: str  # plain | starttls | tls
    sender: str
    username: str | None = None
    password: str | None = None

    @classmethod
    def from_url(cls, url: str, sender: str) -> SmtpConfig:
        """``smtp://``, ``smtp+starttls://`` or ``smtps://[user:password@]host[:port]``; ConfigError otherwise."""
        parts = urlsplit(url)
        if parts.scheme not in _PORTS or not parts.hostname:
            raise ConfigError("AMIFLOW_SMTP_URL: expected smtp://, smtp+starttls:// or smtps://[user:pass@]host[:port]")
        try:
            port = parts.port or _PORTS[parts.scheme]
        except ValueError:
            raise ConfigError("AMIFLOW_SMTP_URL: the port is not a number") from None
        if "@" not in parseaddr(sender)[1]:
            raise ConfigError(f"AMIFLOW_MAIL_FROM: {sender!r} is not an e-mail address (e.g. billing@utility.example)")
        security = {"smtp": "plain", "smtp+starttls": "starttls", "smtps": "tls"}[parts.scheme]
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        return cls(parts.hostname, port, security, sender, user, password)


def smtp_verdict(code: int, stage: str, text: str) -> Outcome:
    """The outcome (id 0; the caller sets it) of a refusal with ``code`` at ``stage`` (RCPT TO or DATA)."""
    text = " ".join(text.split())[:300]
    if 500 <= code < 600:
        return Outcome(0, Verdict.REJECTED, code, f"bounce: SMTP {code} at {stage}: {text}")
    return Outcome(0, Verdict.RETRY, code, f"SMTP {code} at {stage}: {text}")


class EmailSink:
    """Send each ``ebill`` item as an e-mail. Constructing it opens nothing; each batch opens its own sessions."""

    name = "email"

    def __init__(self, config: SmtpConfig, *, connections: int = 4, timeout_s: float = 30.0) -> None:
        self.config = config
        self.timeout_s = timeout_s
        self._connections = max(1, connections)
        self._tls = ssl.create_default_context(cafile=certifi.where())

    async def __aenter__(self) -> EmailSink:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def deliver(self, items: Sequence[OutboxItem], send_before: float) -> list[Outcome]:
        lanes = [list(items[i :: self._connections]) for i in range(min(self._connections, len(items)))]
        results = await asyncio.gather(*(self._lane(lane, send_before) for lane in lanes))
        return [o for lane in results for o in lane]

    async def _connect(self) -> aiosmtplib.SMTP:
        c = self.config
        smtp = aiosmtplib.SMTP(
            hostname=c.host, port=c.port, username=c.username, password=c.password, timeout=self.timeout_s,
            use_tls=c.security == "tls", start_tls=c.security == "starttls", tls_context=self._tls,
        )  # fmt: skip
        async with asyncio.timeout(self.timeout_s):
            await smtp.connect()
        return smtp

    async def _lane(self, items: Sequence[OutboxItem], send_before: float) -> list[Outcome]:
        out: list[Outcome] = []
        smtp: aiosmtplib.SMTP | None = None
        loop = asyncio.get_running_loop()
        try:
            for n, item in enumerate(items):
                if loop.time() > send_before:
                    out += [Outcome(it.id, Verdict.RETRY, None, _LEASE_LOST, sent=False) for it in items[n:]]
                    break
                try:
                    data = bill_ready_message(item.payload, item.idempotency_key, self.config.sender).as_bytes()
                    to = str(item.payload["to"])
                except (KeyError, TypeError, ValueError) as exc:  # a payload no e-mail can come from: keep it
                    out.append(Outcome(item.id, Verdict.REJECTED, None, f"not an e-bill payload: {exc!r}"[:300]))
                    continue
                if smtp is None:
                    try:
                        smtp = await self._connect()
                    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                        error = f"SMTP {self.config.host}:{self.config.port}: {type(exc).__name__}: {exc}"[:500]
                        out += [Outcome(it.id, Verdict.RETRY, None, error) for it in items[n:]]
                        break
                outcome, keep = await self._send(smtp, item, to, data)
                out.append(outcome)
                if not keep:
                    await _close(smtp)
                    smtp = None
        finally:
            if smtp is not None:
                await _close(smtp)
        return out

    async def _send(self, smtp: aiosmtplib.SMTP, item: OutboxItem, to: str, data: bytes) -> tuple[Outcome, bool]:
        """One message on an open session: (outcome, whether the session may carry the next message)."""
        try:
            async with asyncio.timeout(self.timeout_s):
                _, _response = await smtp.sendmail(self.config.sender, [to], data)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            first = exc.recipients[0]
            return _with_id(smtp_verdict(first.code, "RCPT TO", first.message), item), False
        except aiosmtplib.SMTPDataError as exc:
            return _with_id(smtp_verdict(exc.code, "DATA", exc.message), item), False
        except aiosmtplib.SMTPResponseException as exc:  # sender refused, a 5xx to RSET: ours to fix, not a bounce
            return Outcome(item.id, Verdict.RETRY, exc.code, f"SMTP {exc.code}: {exc.message}"[:500]), False
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return Outcome(item.id, Verdict.RETRY, None, f"outcome unknown: {type(exc).__name__}: {exc}"[:500]), False
        return Outcome(item.id, Verdict.DELIVERED, 250, None), True


def _with_id(outcome: Outcome, item: OutboxItem) -> Outcome:
    return Outcome(item.id, outcome.verdict, outcome.code, outcome.error)


async def _close(smtp: aiosmtplib.SMTP) -> None:
    try:
        async with asyncio.timeout(5):
            await smtp.quit()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        smtp.close()


def make_email_sink(settings: Settings, *, connections: int = 4, timeout_s: float = 30.0) -> EmailSink:
    """The e-mail sink from AMIFLOW_SMTP_URL and AMIFLOW_MAIL_FROM; ConfigError names what is missing."""
    if settings.smtp_url is None:
        raise ConfigError("AMIFLOW_SMTP_URL is not set: e-bills stay in the outbox (e.g. smtp+starttls://HOST:587)")
    if not settings.mail_from:
        raise ConfigError("AMIFLOW_MAIL_FROM is not set: e-bills need a sender address (e.g. billing@utility.example)")
    config = SmtpConfig.from_url(settings.smtp_url.get_secret_value(), settings.mail_from)
    return EmailSink(config, connections=connections, timeout_s=timeout_s)
