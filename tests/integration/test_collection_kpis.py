"""Collection KPIs per region and collector on a real PostgreSQL, checked against figures worked out by hand, and
``amiflow report collection`` as text, CSV and HTML (a plot per KPI over 12 months), beside the unchanged
``amiflow report --period``."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from amiflow.db.registry import AccountAssignment, assign_account
from amiflow_app.cli import main
from amiflow_app.report.collection import gather_collection, write_collection_report
from billing_bridge.collection_kpis import KPI_NAMES, UNASSIGNED, collection_kpis, month_starts
from billing_bridge.payments import PaymentIn, record_payment
from billing_bridge.plans import create_plan, load_plan_terms
from billing_bridge.policy import load_ruleset

US = load_ruleset("us_tx")
D = Decimal
FEB = date(2026, 2, 1)


def _bill(conn: psycopg.Connection[Any], account: str, start: str, end: str, total: str) -> None:
    conn.execute(
        "INSERT INTO amiflow.bills (bill_id, version, account, meter, period_start, period_end, tariff_id,"
        " tariff_version, total, currency, content_hash, body) VALUES (%s, 1, %s, 'M', %s, %s, 'T', 1, %s, 'USD',"
        " 'h', '{}')",
        (f"B-{account}-{start}", account, start, end, total),
    )


def _pay(conn: psycopg.Connection[Any], account: str, amount: str, at: datetime) -> None:
    record_payment(conn, PaymentIn(payment_id=uuid.uuid4().hex, account=account, amount=amount, currency="USD",
                                   paid_at=at), "api")  # fmt: skip


def _at(day: str, hour: int = 18) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


@pytest.fixture
def book(db_conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    for account, region, collector in (("ACC-1", "north", "COL-1"), ("ACC-2", "north", "COL-2"),
                                       ("ACC-3", "south", "COL-1")):  # fmt: skip
        assign_account(db_conn, AccountAssignment(account, region, collector))
    db_conn.execute("INSERT INTO amiflow.accounts (account, currency) VALUES ('ACC-4', 'USD')")
    _bill(db_conn, "ACC-1", "2026-01-01", "2026-01-31", "100.00")  # due 02-21
    _bill(db_conn, "ACC-1", "2026-02-01", "2026-02-28", "120.00")  # due 03-21
    _bill(db_conn, "ACC-2", "2025-10-01", "2025-10-31", "60.00")  # due 2025-11-21: 100 days past due on 03-01
    _bill(db_conn, "ACC-2", "2026-01-01", "2026-01-31", "200.00")
    _bill(db_conn, "ACC-2", "2026-02-01", "2026-02-28", "50.00")
    _bill(db_conn, "ACC-3", "2026-01-01", "2026-01-31", "80.00")
    _pay(db_conn, "ACC-1", "100.00", _at("2026-02-10"))
    _pay(db_conn, "ACC-3", "30.00", _at("2026-02-15"))
    _pay(db_conn, "ACC-4", "5.00", _at("2026-03-02"))  # March: not February's
    create_plan(db_conn, US, load_plan_terms("us_tx"), account="ACC-3", installments=2, now=_at("2026-02-25", 16))
    for kind, at in (("payment_reminder", "2026-02-24"), ("disconnect_warning", "2026-02-25"),
                     ("low_balance@10.00", "2026-02-25"), ("payment_reminder", "2026-03-03")):  # fmt: skip
        db_conn.execute(
            "INSERT INTO amiflow.notices (account, debt_ref, type, sent_at, outbox_key) VALUES ('ACC-2', %s, %s, %s,"
            " %s)",
            (f"ref-{at}", kind, _at(at), uuid.uuid4().hex),
        )
    row = db_conn.execute(
        "INSERT INTO amiflow.disconnect_decisions (decided_at, account, meter, ruleset_id, ruleset_version, allowed,"
        " deciding_rules, results, inputs) VALUES (%s, 'ACC-2', 'M2', 'us_tx', '1', true, '{}', '{}', '{}')"
        " RETURNING id",
        (_at("2026-02-26", 16),),
    ).fetchone()
    assert row is not None
    for action, state, decision in (("disconnect", "confirmed", row[0]), ("reconnect", "failed", None)):
        db_conn.execute(
            "INSERT INTO amiflow.meter_commands (id, meter, account, action, decision_id, state, created_at)"
            " VALUES (%s, 'M2', 'ACC-2', %s, %s, %s, %s)",
            (uuid.uuid4(), action, decision, state, _at("2026-02-26", 16)),
        )
    return db_conn


def test_kpis_by_region_match_the_hand_worked_figures(book: psycopg.Connection[Any]) -> None:
    north, south, unassigned = collection_kpis(book, US, FEB, "region")
    assert (north.group, south.group, unassigned.group) == ("north", "south", UNASSIGNED)
    # February's billing: the January bills, issued on 1 February (the February bills are issued in March)
    assert north.accounts == 2 and north.billed == D("300.00") and north.collected == D("100.00")
    assert north.collection_rate == D("0.3333")
    # at the end of 28 February: ACC-2's January bill is 7 days past due, October's 99; ACC-1's January bill is paid
    assert (north.arrears_0_30, north.arrears_31_60, north.arrears_61_90, north.arrears_over_90) == (
        D("200.00"), D(0), D(0), D("60.00")
    )  # fmt: skip
    assert north.receivables == D("260.00") and north.dso_days == D("24.3")  # 260 / 300 x 28 days
    assert north.reminders_sent == 2 and north.disconnects == 1 and north.reconnects == 0  # failed: not counted
    assert south.billed == D("80.00") and south.collection_rate == D("0.3750") and south.dso_days == D("17.5")
    assert south.collected == D("30.00") and south.arrears_0_30 == D("50.00")
    assert (south.plans_created, south.plans_active, south.plans_kept, south.plans_broken) == (1, 1, 0, 0)
    assert unassigned.accounts == 1 and unassigned.collected == 0 and unassigned.collection_rate is None
    row = north.as_json("region")
    assert row["region"] == "north" and row["collection_rate"] == "0.3333" and row["arrears_over_90"] == "60.00"


def test_kpis_by_collector_and_an_earlier_month(book: psycopg.Connection[Any]) -> None:
    by = {r.group: r for r in collection_kpis(book, US, FEB, "collector")}
    assert set(by) == {"COL-1", "COL-2", UNASSIGNED}
    assert by["COL-1"].billed == D("180.00") and by["COL-1"].collected == D("130.00")
    assert by["COL-1"].arrears_0_30 == D("50.00")
    january = {r.group: r for r in collection_kpis(book, US, date(2026, 1, 1), "collector")}
    assert january["COL-1"].billed == 0 and january["COL-1"].collected == 0
    assert january["COL-2"].arrears_61_90 == D("60.00")  # October's bill on 31 January: 71 days past due
    assert month_starts(FEB, 3) == [date(2025, 12, 1), date(2026, 1, 1), FEB]


def test_the_report_writes_a_table_and_a_plot_per_kpi(book: psycopg.Connection[Any], tmp_path: Path) -> None:
    report = gather_collection(book, US, FEB, "region")
    assert [m for m, _ in report.history] == month_starts(FEB, 12)
    path = write_collection_report(report, tmp_path)
    page = path.read_text(encoding="utf-8")
    assert path.name == "collection-region-2026-02.html"
    assert page.count("<img") == len(KPI_NAMES) == len(list(tmp_path.glob("*.png")))
    found = re.search(r'<script type="application/json" id="collection">(.*?)</script>', page, re.S)
    assert found is not None and json.loads(found.group(1)) == report.as_json()
    assert "<th scope='row'>north</th>" in page and "total" in page
    rows = list(csv.DictReader(io.StringIO((tmp_path / "collection-region-2026-02.csv").read_text())))
    assert [r["region"] for r in rows] == ["north", "south", UNASSIGNED] and rows[0]["billed"] == "300.00"


def test_report_collection_and_the_plain_report_from_the_cli(
    book: psycopg.Connection[Any],
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AMIFLOW_DATABASE_URL", db_url)
    assert main(["report", "collection", "--period", "2026-02", "--by", "collector"]) == 0
    text = capsys.readouterr().out
    assert "collection by collector, 2026-02" in text and "COL-2" in text and "72.2%" in text  # 130 / 180
    assert main(["report", "collection", "--period", "2026-02", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("north,USD,2,300.00,100.00,0.3333,")
    assert main(["report", "collection", "--period", "2026-02", "--format", "html", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "collection-region-2026-02.html").is_file()
    # the report of a period works exactly as before
    assert main(["report", "--period", "2026-02", "--out", str(tmp_path / "plain")]) == 0
    assert (tmp_path / "plain" / "report.html").is_file()
    with pytest.raises(SystemExit) as missing:
        main(["report"])
    assert missing.value.code == 2 and "required: --period" in capsys.readouterr().err
