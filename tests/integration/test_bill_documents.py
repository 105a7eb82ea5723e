"""``amiflow bill render`` on a real PostgreSQL: the month's billed meters become PDF and HTML documents whose figures
are the store's - the bill's total, lines and kWh, the register reads at the period's ends, the daily usage summing
to the billed kWh, the account statement (a payment in the period; a balance statement from billing), the
installment plan - plus index.json as CONTRACT.md names it, and one-line errors for bad input.

The fleet is test_billing_run's: meters on res-tou-tiers (America/Los_Angeles), March 2024, registers at both ends.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from io import BytesIO
from pathlib import Path
from typing import Any

import psycopg
import pytest

from amiflow.db.accounts import import_contacts_csv
from amiflow_app.cli import main
from billing_bridge.customer.documents_data import DocumentOptions, gather_documents
from billing_bridge.customer.payment_reference import format_reference, rf_valid
from billing_bridge.policy import load_ruleset
from rating.billing_run import run_billing
from tests.integration.test_billing_run import PERIOD, _opts, _tariff, seed_meter

CONTACTS = (
    "account,name,email,ebill,address\n"
    'A-M0,Jane Doe,jane@example.com,yes,"12 Main Street;Springfield, CA 90001"\n'
    "A-M1,Bob Roe,bob@example.com,no,\n"
)


def seed_bills(db_url: str, conn: psycopg.Connection[Any], meters: int = 2) -> None:
    """Meters M0.. billed for March 2024; contacts for A-M0 (e-bill) and A-M1 (paper); a payment of A-M0 in March,
    a balance statement of A-M1 before March's end, and an installment plan of A-M0 created in March."""
    _tariff(conn)
    for k in range(meters):
        seed_meter(conn, f"M{k}", seed=k)
    run_billing(db_url, _opts())
    import_contacts_csv(conn, CONTACTS)
    conn.execute("UPDATE amiflow.accounts SET currency = 'USD' WHERE account LIKE 'A-M%'")
    conn.execute(
        "INSERT INTO amiflow.accounts (account, currency) SELECT 'A-M' || k, 'USD' FROM generate_series(0, %s) k"
        " ON CONFLICT (account) DO NOTHING",
        (meters - 1,),
    )
    conn.execute(
        "INSERT INTO amiflow.payments (payment_id, account, amount, currency, paid_at, source) VALUES"
        " ('p1', 'A-M0', 20.00, 'USD', '2024-03-10T17:00:00Z', 'api'),"
        " ('p2', 'A-M0', 99.00, 'USD', '2024-04-03T17:00:00Z', 'api')"  # after the period: not on March's bill
    )
    conn.execute(
        "INSERT INTO amiflow.balances (account, as_of, balance, currency, due_date, source) VALUES"
        " ('A-M1', '2024-03-05T12:00:00Z', 42.00, 'USD', '2024-03-25', 'api')"
    )
    row = conn.execute(
        "INSERT INTO amiflow.installment_plans (account, currency, state, overdue_amount, down_payment, installments,"
        " grace_days, terms_id, terms_version, created_at) VALUES ('A-M0', 'USD', 'active', 120.00, 20.00, 4, 5,"
        " 'us_tx', '1', '2024-03-15T12:00:00Z') RETURNING id"
    ).fetchone()
    assert row is not None
    conn.execute(
        "INSERT INTO amiflow.plan_installments (plan_id, number, due_date, amount) VALUES"
        " (%(p)s, 0, '2024-03-15', 20.00), (%(p)s, 1, '2024-04-15', 25.00), (%(p)s, 2, '2024-05-15', 25.00),"
        " (%(p)s, 3, '2024-06-15', 25.00), (%(p)s, 4, '2024-07-15', 25.00)",
        {"p": row[0]},
    )


@pytest.fixture
def billed(db_url: str, db_conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch) -> psycopg.Connection[Any]:
    seed_bills(db_url, db_conn)
    monkeypatch.setenv("AMIFLOW_DATABASE_URL", db_url)
    return db_conn


def _pdf_text(data: bytes) -> str:
    pypdf = pytest.importorskip("pypdf", reason="pypdf is in the test extra (pip install -e '.[test]')")
    return " ".join(" ".join((p.extract_text() or "").split()) for p in pypdf.PdfReader(BytesIO(data)).pages)


def _bills(conn: psycopg.Connection[Any]) -> dict[str, dict[str, Any]]:
    rows = conn.execute("SELECT bill_id, body FROM amiflow.bills WHERE status = 'issued'").fetchall()
    return {r[0]: r[1] for r in rows}


def test_render_writes_the_stores_figures(billed: psycopg.Connection[Any], tmp_path: Path) -> None:
    out = tmp_path / "bills"
    assert main(["bill", "render", "--period", "2024-03", "--format", "both", "--out", str(out)]) == 0
    index = json.loads((out / "index.json").read_text())
    bills = _bills(billed)
    assert sorted(e["bill_id"] for e in index) == sorted(bills)
    for entry in index:
        bill = bills[entry["bill_id"]]
        assert {k: entry[k] for k in ("account", "meter", "total", "currency", "kwh_import")} == {
            "account": bill["account"], "meter": bill["meters"][0], "total": bill["total"],
            "currency": bill["currency"], "kwh_import": bill["determinants"]["import_kwh"],
        }  # fmt: skip
        assert rf_valid(entry["payment_reference"])
        text = _pdf_text((out / entry["pdf"]).read_bytes())
        html = (out / entry["html"]).read_text()
        for needle in (f"{Decimal(bill['total']):,} USD", format_reference(entry["payment_reference"])):
            assert needle in text and needle in html
        for line in bill["lines"]:
            assert line["description"] in text and f"{Decimal(line['amount']):,}" in text
    jane = next(e for e in index if e["account"] == "A-M0")
    total = Decimal(jane["total"])
    assert Decimal(jane["amount_due"]) == total - Decimal("20.00")  # nothing owed before, 20.00 paid in March
    bob = next(e for e in index if e["account"] == "A-M1")
    assert Decimal(bob["amount_due"]) == Decimal(bob["total"]) + Decimal("42.00")  # billing's statement of 5 March
    jane_text = _pdf_text((out / jane["pdf"]).read_bytes())
    assert "Jane Doe" in jane_text and "Springfield, CA 90001" in jane_text and "Installment plan" in jane_text
    assert "Due by 21 Apr 2024" in jane_text  # us_tx: 21 days after the last billed day


def test_documents_show_registers_and_daily_use(billed: psycopg.Connection[Any]) -> None:
    ruleset = load_ruleset("us_tx")
    docs = gather_documents(billed, PERIOD, options=DocumentOptions(ruleset.payment_terms_days, ruleset))
    assert len(docs) == 2
    for doc in docs:
        assert doc.usage is not None and len(doc.usage.days) == 31 and doc.usage.periods
        daily = sum(doc.usage.day_total(i) for i in range(31))
        assert abs(daily - doc.kwh_import) <= Decimal("0.001") * 31  # each day rounded to the Wh
        (reg,) = doc.registers
        assert reg.obis == "1-0:1.8.0" and reg.start_kwh == Decimal("5000.000")
        assert reg.delta_kwh is not None and abs(reg.delta_kwh - doc.kwh_import) <= Decimal("0.001")
    jane = next(d for d in docs if d.customer.account == "A-M0")
    assert jane.customer.name == "Jane Doe" and jane.customer.address == ("12 Main Street", "Springfield, CA 90001")
    assert [p.amount for p in jane.statement.payments] == [Decimal("20.00")]
    assert jane.plan is not None and jane.plan.installments == 4 and jane.plan.state == "active"
    bob = next(d for d in docs if d.customer.account == "A-M1")
    assert bob.statement.basis == "statement" and bob.statement.previous_balance == Decimal("42.00")
    assert bob.plan is None


def test_render_one_account_and_bad_input(
    billed: psycopg.Connection[Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "one"
    assert main(["bill", "render", "--period", "2024-03", "--account", "A-M1", "--out", str(out)]) == 0
    assert [e["account"] for e in json.loads((out / "index.json").read_text())] == ["A-M1"]
    assert sorted(p.suffix for p in out.iterdir()) == [".json", ".pdf"]
    capsys.readouterr()
    cases = [
        (["--period", "2024-03", "--account", "NOPE"], "unknown account 'NOPE'"),
        (["--period", "2024-05"], "no bills in 2024-05"),
        (["--period", "2024-13"], "--period '2024-13' is not a month (YYYY-MM)"),
    ]
    for extra, message in cases:
        assert main(["bill", "render", *extra, "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    assert date(2024, 3, 1) == PERIOD
