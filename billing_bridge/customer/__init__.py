"""The customer's side of the usage data: Green Button (ESPI) and CSV exports, usage insights, best-tariff advice.

    usage = read_usage(conn, "M1", date(2026, 11, 1), date(2026, 12, 1))   # the store's intervals (VEE overlaid)
    xml = espi_feed(usage, currency="USD")                                   # NAESB REQ.21 ESPI Atom feed
    data = export_usage(conn, "M1", start, end, "csv")                      # or "espi"
    insights = usage_insights(conn, "M1", date(2026, 11, 1))                # baseload, peaks, comparisons, tariffs
    print("\n".join(insights.sentences()))

Customer tokens (:func:`customer_token`) open one account's data in the HTTP API. See docs/usage.md.

Bill documents and e-bills (docs/bills.md)::

    docs = gather_documents(conn, date(2026, 11, 1), options=DocumentOptions(terms_days=21))   # BillDocument list
    write_documents(docs, Path("bills"), formats=("pdf", "html"))                            # files + index.json
    queue_ebills(conn, docs, now=now)                       # outbox kind ebill; 'bridge run --sink email' sends them
"""

from billing_bridge.customer.access import customer_token, token_account
from billing_bridge.customer.documents import render_month, write_documents
from billing_bridge.customer.documents_data import DocumentOptions, gather_documents
from billing_bridge.customer.documents_html import render_html
from billing_bridge.customer.documents_model import BillDocument
from billing_bridge.customer.documents_pdf import render_pdf
from billing_bridge.customer.ebill import bill_ready_message, queue_ebills
from billing_bridge.customer.export import export_usage, usage_csv, write_greenbutton_files
from billing_bridge.customer.greenbutton import espi_feed, espi_qualities
from billing_bridge.customer.insights import Insights, usage_insights
from billing_bridge.customer.tariff_advice import SavingTip, TariffAdvice, TariffCost, tariff_advice, what_if
from billing_bridge.customer.usage import (
    Channel,
    MeterInfo,
    MeterUsage,
    UsageNotFound,
    parse_day,
    parse_month,
    read_usage,
)

__all__ = [
    "BillDocument",
    "Channel",
    "DocumentOptions",
    "Insights",
    "MeterInfo",
    "MeterUsage",
    "SavingTip",
    "TariffAdvice",
    "TariffCost",
    "UsageNotFound",
    "bill_ready_message",
    "customer_token",
    "espi_feed",
    "espi_qualities",
    "export_usage",
    "gather_documents",
    "parse_day",
    "parse_month",
    "queue_ebills",
    "read_usage",
    "render_html",
    "render_month",
    "render_pdf",
    "tariff_advice",
    "token_account",
    "usage_csv",
    "usage_insights",
    "what_if",
    "write_documents",
    "write_greenbutton_files",
]
