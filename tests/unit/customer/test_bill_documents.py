"""Bill documents without a database: RF references, money rounding, the JSON round trip, the daily TOU split, the
PDF (valid, deterministic, saying the amounts) and the accessible HTML, and the e-bill message."""

from __future__ import annotations

import email
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from email.policy import default as default_policy
from html.parser import HTMLParser
from io import BytesIO
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from amiflow.db.accounts import AccountContact
from amiflow.errors import ConfigError
from billing_bridge.customer.documents import write_documents
from billing_bridge.customer.documents_html import render_html
from billing_bridge.customer.documents_model import (
    BillDocument,
    Customer,
    DailyUsage,
    DocLine,
    PaymentLine,
    PlanStatus,
    RegisterRead,
    Statement,
    money,
)
from billing_bridge.customer.documents_pdf import render_pdf
from billing_bridge.customer.documents_usage import daily_tou
from billing_bridge.customer.ebill import bill_ready_message, ebill_key, message_id
from billing_bridge.customer.payment_reference import bill_reference, format_reference, rf_reference, rf_valid
from billing_bridge.delivery import Verdict
from billing_bridge.email_sink import SmtpConfig, smtp_verdict
from rating import compile_tariff, load_tariff

ROOT = Path(__file__).resolve().parents[3]
D = Decimal


def _doc(name: str = "Jane Doe", *, plan: bool = True, paid: str = "50.00") -> BillDocument:
    days = tuple(date(2026, 11, 1) + timedelta(days=i) for i in range(30))
    usage = DailyUsage(("peak", "off_peak"), days, tuple((D("3.125") + i % 4, D("6.250")) for i in range(30)),
                       tuple(D("0.500") for _ in days), 3)  # fmt: skip
    lines = (
        DocLine("energy_peak_t1", "Energy peak, tier 1", D("123.750"), "kWh", D("0.41234"), D("51.03")),
        DocLine("base_services", "Base services charge", D("30"), "day", D("0.39"), D("11.70")),
        DocLine("utility_users_tax", "Utility users tax", D("62.73"), "USD", D("7.5"), D("4.70"), True),
    )
    statement = Statement(D("50.00"), (PaymentLine(date(2026, 11, 10), D(paid)),), D("67.43"), date(2026, 12, 21))
    status = PlanStatus(3, "active", "good_standing", 6, 2, 3, date(2026, 12, 15), D("40.00"), D("160.00"))
    reads = (RegisterRead("1-0:1.8.0", "Import register (1.8.0)", datetime(2026, 11, 1, 7, tzinfo=UTC),
                          D("5000.000"), datetime(2026, 12, 1, 8, tzinfo=UTC), D("5281.250")),)  # fmt: skip
    return BillDocument(
        "ACC-1:2026-11-01:2026-11-30", 1, Customer("ACC-1", name, ("12 Main Street", "Springfield"), "j@example.com"),
        "M1", "America/Los_Angeles", "USD", date(2026, 12, 1), date(2026, 11, 1), date(2026, 11, 30),
        "res-tou-tiers", 1, "Residential TOU", lines, D("67.43"), 0.0125, D("281.250"), D("15.000"),
        (("peak", D("93.750")),), reads, usage, statement, bill_reference("ACC-1:2026-11-01:2026-11-30", "ACC-1",
                                                                            date(2026, 11, 1)),
        status if plan else None, datetime(2026, 12, 1, 10, tzinfo=UTC),
    )  # fmt: skip


def _pdf_text(data: bytes) -> str:
    pypdf = pytest.importorskip("pypdf", reason="pypdf is in the test extra (pip install -e '.[test]')")
    reader = pypdf.PdfReader(BytesIO(data))
    return " ".join(" ".join((page.extract_text() or "").split()) for page in reader.pages)


def test_rf_references_follow_iso_11649() -> None:
    assert rf_reference("539007547034") == "RF18539007547034"  # the standard's example
    assert rf_valid("RF18 5390 0754 7034") and rf_valid("rf712348231")
    assert not rf_valid("RF18539007547035") and not rf_valid("RF1") and not rf_valid("XX18539007547034")
    ref = bill_reference("ACC-000001:2026-11-01:2026-11-30", "ACC-000001", date(2026, 11, 1))
    assert rf_valid(ref) and len(ref) <= 25 and ref[4:].startswith("ACC000001202611")
    assert ref == bill_reference("ACC-000001:2026-11-01:2026-11-30", "ACC-000001", date(2026, 11, 1))
    assert ref != bill_reference("ACC-000001:2026-11-16:2026-11-30", "ACC-000001", date(2026, 11, 1))
    assert format_reference("RF18539007547034") == "RF18 5390 0754 7034"
    with pytest.raises(ValueError):
        rf_reference("has space")


def test_money_rounds_once_half_to_even() -> None:
    assert money(D("2.345"), "USD") == D("2.34") and money(D("2.355"), "USD") == D("2.36")
    assert money(D("-0.125"), "EUR") == D("-0.12") and money("100.5", "JPY") == D("100")


def test_statement_and_document_totals() -> None:
    doc = _doc()
    assert doc.statement.amount_due == D("67.43")  # 50.00 owed - 50.00 paid + this bill
    assert doc.subtotal + doc.taxes_total == doc.total
    assert _doc(paid="80.00").statement.amount_due == D("37.43")


def test_document_survives_json() -> None:
    doc = _doc()
    assert BillDocument.from_json(doc.to_json()) == doc
    assert BillDocument.from_json(_doc(plan=False).to_json()).plan is None


def test_daily_tou_splits_each_day_by_the_tariffs_periods() -> None:
    tariff = compile_tariff(load_tariff(ROOT / "rating" / "tariffs" / "residential_tou_tiers.toml")[0])
    tz, zone = "America/Los_Angeles", ZoneInfo("America/Los_Angeles")
    start, end = date(2026, 11, 1), date(2026, 11, 8)  # DST ends on 1 Nov: a 25-hour first day
    lo = int(datetime(2026, 11, 1, tzinfo=zone).timestamp())
    hi = int(datetime(2026, 11, 8, tzinfo=zone).timestamp())
    ts = np.arange(lo + 900, hi + 1, 900, dtype=np.int64)
    quality = np.zeros(len(ts), dtype=np.int64)
    quality[5] = 1  # estimated
    u = daily_tou(tariff, tz, start, end, ts, np.full(len(ts), 250.0), 900, quality=quality)
    assert u.periods == tariff.periods and len(u.days) == 7 and u.estimated_intervals == 1
    peak = u.periods.index("peak")
    # 1 Nov 2026 is a Sunday (no peak) with 100 quarter hours; Monday 2 Nov has 5 peak hours (16-21) = 20 intervals
    assert u.day_total(0) == D("25.000") and u.kwh[0][peak] == 0
    assert u.kwh[1][peak] == D("5.000") and u.day_total(1) == D("24.000")
    assert sum(u.day_total(i) for i in range(7)) == D(len(ts) * 250) / 1000


def test_pdf_is_valid_deterministic_and_says_the_amounts() -> None:
    doc = _doc()
    data = render_pdf(doc)
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    assert render_pdf(doc) == data  # the same document gives the same bytes (e-bill retries)
    text = _pdf_text(data)
    for needle in (
        "67.43 USD",
        "Due by 21 Dec 2026",
        format_reference(doc.payment_reference),
        "Utility users tax",
        "7.5 %",
        "Installment plan 3",
        "1.2% of this bill",
        "Previous balance",
        "5,281.250",
        "Jane Doe",
    ):
        assert needle in text, needle  # fmt: skip


def test_pdf_of_a_name_beyond_latin1_embeds_a_unicode_font() -> None:
    text = _pdf_text(render_pdf(_doc("Łukasz Żółć")))
    assert "Łukasz Żółć" in text


class _Outline(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_is_accessible_and_printable() -> None:
    page = render_html(_doc())
    outline = _Outline()
    outline.feed(page)
    tags = outline.tags
    assert ("html", {"lang": "en"}) in tags
    assert [t for t, _ in tags].count("h1") == 1 and [t for t, _ in tags].count("h2") >= 4
    assert all("scope" in a for t, a in tags if t == "th")
    assert [t for t, _ in tags].count("caption") == [t for t, _ in tags].count("table")
    svg = next(a for t, a in tags if t == "svg")
    assert svg["role"] == "img" and svg["aria-labelledby"] == "chart-title chart-desc"
    assert ("title", {"id": "chart-title"}) in tags and ("desc", {"id": "chart-desc"}) in tags
    assert "@media print" in page and "<script" not in page
    text = " ".join("".join(outline.text).split())
    assert "67.43 USD" in text and "Due by 21 Dec 2026" in text


def test_write_documents_names_files_and_indexes_them(tmp_path: Path) -> None:
    written = write_documents([_doc()], tmp_path / "bills", formats=("pdf", "html"))
    (w,) = written
    assert w.pdf is not None and w.pdf.name == "ACC-1_2026-11-01_2026-11-30.pdf" and w.html is not None
    import json

    (entry,) = json.loads((tmp_path / "bills" / "index.json").read_text())
    assert entry["bill_id"] == "ACC-1:2026-11-01:2026-11-30" and entry["total"] == "67.43"
    assert entry["kwh_import"] == "281.250" and entry["pdf"] == w.pdf.name and entry["amount_due"] == "67.43"
    with pytest.raises(ConfigError):
        write_documents([], tmp_path, formats=("docx",))


def _payload(doc: BillDocument) -> dict[str, Any]:
    return {"type": "bill_ready", "bill_id": doc.bill_id, "version": doc.version, "account": "ACC-1",
            "to": "jane@example.com", "name": "Jane Doe", "queued_at": "2026-12-01T10:00:00+00:00",
            "document": doc.to_json()}  # fmt: skip


def test_bill_ready_message_is_deterministic_with_the_pdf() -> None:
    doc = _doc()
    key = ebill_key(doc.bill_id, doc.version)
    sender = "Billing <billing@utility.example>"
    first = bill_ready_message(_payload(doc), key, sender).as_bytes()
    assert bill_ready_message(_payload(doc), key, sender).as_bytes() == first
    msg = email.message_from_bytes(first, policy=default_policy)
    assert msg["Message-ID"] == message_id(key, sender) and msg["Message-ID"].endswith("@utility.example>")
    assert msg["X-Amiflow-Idempotency-Key"] == key and "67.43 USD" in msg["Subject"]
    (attachment,) = list(msg.iter_attachments())  # type: ignore[attr-defined]
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content() == render_pdf(doc)
    body = msg.get_body(("plain",))
    assert body is not None and "RF" in body.get_content() and "67.43 USD" in body.get_content()


def test_smtp_answers_classify_bounces_and_retries() -> None:
    assert smtp_verdict(550, "RCPT TO", "5.1.1 no such user").verdict is Verdict.REJECTED
    assert (
        smtp_verdict(550, "RCPT TO", "5.1.1 no\r\n such user").error
        == "bounce: SMTP 550 at RCPT TO: 5.1.1 no such user"
    )
    assert smtp_verdict(452, "RCPT TO", "mailbox full").verdict is Verdict.RETRY
    assert smtp_verdict(451, "DATA", "try later").verdict is Verdict.RETRY


def test_smtp_urls_and_contacts_are_checked() -> None:
    c = SmtpConfig.from_url("smtps://u%40x:p%3Ass@mail.example", "billing@utility.example")
    assert (c.host, c.port, c.security, c.username, c.password) == ("mail.example", 465, "tls", "u@x", "p:ss")
    assert SmtpConfig.from_url("smtp+starttls://mail.example", "b@u.example").port == 587
    for url, sender in (("http://mail.example", "b@u.example"), ("smtp://mail.example", "nobody")):
        with pytest.raises(ConfigError):
            SmtpConfig.from_url(url, sender)
    AccountContact("A", "Jane", "jane@example.com", ebill=True).check()
    for bad in (AccountContact("A", "Jane", "not-an-address"), AccountContact("A", "Jane", None, ebill=True),
                AccountContact("A", "", "jane@example.com")):  # fmt: skip
        with pytest.raises(ConfigError, match="account A"):
            bad.check()
