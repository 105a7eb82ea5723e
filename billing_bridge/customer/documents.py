"""Customer bill documents: every bill of a month as a PDF and/or an accessible HTML page, and an ``index.json``.

    docs = gather_documents(conn, date(2026, 11, 1), options=DocumentOptions(terms_days=21))   # from the store
    written = write_documents(docs, Path("bills"), formats=("pdf",))                           # files + index.json

``amiflow bill render --period YYYY-MM [--account A] [--format pdf|html|both] --out DIR`` is these two calls. The
folder gets ``<bill>.pdf`` / ``<bill>.html`` per bill (the bill id with characters other than letters, digits,
``.``, ``-`` and ``_`` replaced by ``_``) and ``index.json``: one object per bill, ``bill_id``, ``version``,
``account``, ``meter``, ``total``, ``currency``, ``kwh_import``, ``amount_due``, ``due_date``, ``payment_reference``
and the file names (``pdf``, ``html``, relative to the folder), money and kWh as decimal strings. Files are written to
a temporary name and renamed, so a reader never sees half a bill. See docs/bills.md.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import psycopg

from amiflow.errors import ConfigError
from billing_bridge.customer.documents_data import DocumentOptions, gather_documents
from billing_bridge.customer.documents_html import render_html
from billing_bridge.customer.documents_model import BillDocument
from billing_bridge.customer.documents_pdf import render_pdf

__all__ = [
    "FORMATS",
    "WrittenBill",
    "document_file_stem",
    "formats_of",
    "index_entry",
    "render_month",
    "write_documents",
]

#: ``--format`` choices and the files each writes
FORMATS: dict[str, tuple[str, ...]] = {"pdf": ("pdf",), "html": ("html",), "both": ("pdf", "html")}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_CHUNK = 100  # documents per task of a worker process


@dataclass(frozen=True, slots=True)
class WrittenBill:
    """One bill's files (paths inside the output folder)."""

    document: BillDocument
    pdf: Path | None
    html: Path | None


def formats_of(choice: str) -> tuple[str, ...]:
    """The file kinds of a ``--format`` choice; ConfigError naming it otherwise."""
    try:
        return FORMATS[choice]
    except KeyError:
        raise ConfigError(f"--format {choice!r}: use one of {', '.join(FORMATS)}") from None


def document_file_stem(bill_id: str) -> str:
    """The file name (without extension) of a bill's documents."""
    return _UNSAFE.sub("_", bill_id)[:200] or "bill"


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def index_entry(written: WrittenBill) -> dict[str, Any]:
    """The ``index.json`` object of one bill (CONTRACT.md's keys first)."""
    d = written.document
    return {
        "bill_id": d.bill_id,
        "account": d.customer.account,
        "meter": d.meter,
        "total": str(d.total),
        "currency": d.currency,
        "kwh_import": str(d.kwh_import),
        **({"usage": str(d.used[0]), "usage_unit": d.usage_unit} if d.usage_unit != "kWh" else {}),
        "pdf": written.pdf.name if written.pdf else None,
        "html": written.html.name if written.html else None,
        "version": d.version,
        "amount_due": str(d.statement.amount_due),
        "due_date": d.statement.due_date.isoformat(),
        "payment_reference": d.payment_reference,
    }


def _render_into(documents: Sequence[BillDocument], out: Path, formats: Sequence[str]) -> list[WrittenBill]:
    written = []
    for doc in documents:
        stem = document_file_stem(doc.bill_id)
        pdf = html = None
        if "pdf" in formats:
            pdf = out / f"{stem}.pdf"
            _write(pdf, render_pdf(doc))
        if "html" in formats:
            html = out / f"{stem}.html"
            _write(html, render_html(doc).encode("utf-8"))
        written.append(WrittenBill(doc, pdf, html))
    return written


def _render_chunk(args: tuple[list[BillDocument], Path, tuple[str, ...]]) -> list[tuple[Path | None, Path | None]]:
    """A worker process's share: the paths written, in order (the documents stay with the parent)."""
    return [(w.pdf, w.html) for w in _render_into(*args)]


def write_documents(
    documents: Sequence[BillDocument], out: Path, *, formats: Sequence[str] = ("pdf",), jobs: int = 1
) -> list[WrittenBill]:
    """Render every document into ``out`` (created if missing) in ``formats`` (``pdf``, ``html``) and write
    ``out/index.json``; returns what was written, in the documents' order. ``jobs`` > 1 renders in that many
    processes (a PDF is CPU work: about 5 ms each on one core here)."""
    unknown = set(formats) - {"pdf", "html"}
    if unknown or not formats:
        raise ConfigError(f"unknown document format(s) {sorted(unknown) or formats}: use pdf and/or html")
    out.mkdir(parents=True, exist_ok=True)
    kinds = tuple(formats)
    if jobs <= 1 or len(documents) < 4 * _CHUNK:
        written = _render_into(documents, out, kinds)
    else:
        chunks = [list(documents[i : i + _CHUNK]) for i in range(0, len(documents), _CHUNK)]
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            paths = [p for part in pool.map(_render_chunk, [(c, out, kinds) for c in chunks]) for p in part]
        written = [WrittenBill(d, pdf, html) for d, (pdf, html) in zip(documents, paths, strict=True)]
    index = [index_entry(w) for w in written]
    _write(out / "index.json", (json.dumps(index, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    return written


def render_month(
    conn: psycopg.Connection[Any],
    period: date,
    out: Path,
    *,
    account: str | None = None,
    formats: Sequence[str] = ("pdf",),
    options: DocumentOptions | None = None,
    jobs: int = 1,
) -> list[WrittenBill]:
    """:func:`gather_documents` then :func:`write_documents`: the month's bills as files in ``out`` (what
    ``amiflow bill render`` and the demo's ``bills/`` folder do)."""
    documents = gather_documents(conn, period, account=account, options=options)
    return write_documents(documents, out, formats=formats, jobs=jobs)
