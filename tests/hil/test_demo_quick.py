"""``amiflow demo --quick`` as a user runs it (a subprocess), against a fresh test database and the test broker; its
summary numbers are checked against the database."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

pytestmark = pytest.mark.timeout(180)

METERS = 20


def scalar(conn: psycopg.Connection[Any], sql: str, params: Any = None) -> Any:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def test_demo_quick_summary_matches_the_database(
    db_url: str, db_conn: psycopg.Connection[Any], mqtt_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "demo-out"
    env = {**os.environ, "AMIFLOW_DATABASE_URL": db_url, "AMIFLOW_MQTT_URL": mqtt_url, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "amiflow_app", "demo", "--quick", "--meters", str(METERS), "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    period = s["period"]

    # the printed summary is the stored one
    assert f"readings published {s['readings_published']} = stored {s['readings_stored']}" in proc.stdout
    assert "(holds)" in proc.stdout

    # published = stored + duplicates + quarantined, and stored is what the database holds
    assert s["readings_published"] == s["readings_stored"] + s["readings_duplicate"] + s["readings_quarantined"]
    stored = scalar(db_conn, "SELECT count(*) FROM amiflow.readings WHERE source = 1")
    assert stored == s["readings_stored"] > 0
    assert sum(s["faults"].values()) > 0
    bad_messages = scalar(
        db_conn, "SELECT count(*) FROM amiflow.quarantine WHERE reason IN ('not_json', 'schema', 'meter_mismatch')"
    )
    assert bad_messages == s["messages_quarantined"]

    # bills count = meters billed, and every registered MQTT meter was billed for the month
    bills = scalar(
        db_conn,
        "SELECT count(*) FROM amiflow.v_bills WHERE status = 'issued' AND to_char(period_start, 'YYYY-MM') = %s",
        (period,),
    )
    assert bills == s["bills_issued"] == s["meters_billed"] == METERS
    assert s["meters_by_protocol"]["mqtt"] == METERS
    # --quick polls the polled meters for the month's last 2 days only: their bills are held back, not made up
    polled = sum(n for p, n in s["meters_by_protocol"].items() if p != "mqtt")
    assert s["bills_skipped"] == ({"too_much_estimated": polled} if polled else {})
    if polled:
        assert s["polls_ok"] > 0 and s["polled_days"] == 2
        assert set(s["commissioning"].values()) == {"passed"}
        polled_rows = scalar(db_conn, "SELECT count(*) FROM amiflow.readings WHERE source <> 1")
        assert polled_rows == s["polled_readings"] > 0
    total = scalar(db_conn, "SELECT sum(total) FROM amiflow.v_bills WHERE status = 'issued'")
    assert f"{total:.2f}" == s["bills_total"]["USD"]

    # every bill and notice reached the billing receiver
    delivered = scalar(db_conn, "SELECT count(*) FROM amiflow.outbox WHERE state = 'delivered'")
    assert delivered == s["receiver_received"] == sum(s["deliveries_by_kind"].values())
    assert s["deliveries_by_kind"]["bill"] == bills
    assert scalar(db_conn, "SELECT count(*) FROM amiflow.outbox WHERE state <> 'delivered'") == 0

    # the account's story: ladder, disconnect (zero load), payment, reconnect
    notices = [
        r[0]
        for r in db_conn.execute(
            "SELECT payload->>'type' FROM amiflow.outbox WHERE kind = 'notice' AND account = %s ORDER BY id",
            (s["account"],),
        ).fetchall()
    ]
    assert notices[:3] == ["payment_reminder", "disconnect_warning", "disconnect_scheduled"]
    assert notices[-2:] == ["disconnected", "reconnected"]
    commands = db_conn.execute(
        "SELECT action, state FROM amiflow.meter_commands WHERE meter = %s ORDER BY created_at", (s["account_meter"],)
    ).fetchall()
    assert commands == [("disconnect", "confirmed"), ("reconnect", "confirmed")]
    assert s["zero_load_intervals"] > 0
    assert s["disconnects_allowed"] == 1
    # the protected (life-support) account owes too but was never disconnected
    assert scalar(db_conn, "SELECT count(*) FROM amiflow.meter_commands WHERE meter <> %s", (s["account_meter"],)) == 0

    # the report
    report = Path(s["report"])
    assert report.is_file() and report.parent == out
    page = report.read_text(encoding="utf-8")
    assert "<html" in page.lower()
    # the report tells the same story as the summary: every figure it shares with summary.json agrees
    found = re.search(r'<script type="application/json" id="figures">(.*?)</script>', page, re.S)
    assert found is not None
    figures = json.loads(found.group(1))
    shared = ("bills_issued", "bills_total", "payments", "deliveries_by_kind", "notices", "meters_by_protocol",
              "disconnects_allowed", "disconnects_blocked", "blocked_by_rule")  # fmt: skip
    assert {k: figures[k] for k in shared} == {k: s[k] for k in shared}
    assert f"Account {s['account']} (meter {s['account_meter']})" in page
    assert f"of {s['account']} (meter {s['account_meter']})" in page  # the bill shown is the story account's
    # the customer's view of the same account: usage insights and the best-tariff table
    assert f"Usage insights and the best tariff for {s['account_meter']}" in page and "current tariff" in page

    # the way in afterwards: the printed hint works
    assert "The demo's data stays in the database of AMIFLOW_DATABASE_URL" in proc.stdout
    assert "amiflow meters list" in proc.stdout
    listed = subprocess.run(
        [sys.executable, "-m", "amiflow_app", "meters", "list"], env=env, capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    assert len([line for line in listed.stdout.splitlines() if "mqtt" in line]) == METERS


def test_demo_refuses_a_database_that_already_holds_meters(
    db_url: str, db_conn: psycopg.Connection[Any], mqtt_url: str, tmp_path: Path
) -> None:
    db_conn.execute("INSERT INTO amiflow.meters (name, protocol) VALUES ('EXISTING', 'mqtt')")
    env = {**os.environ, "AMIFLOW_DATABASE_URL": db_url, "AMIFLOW_MQTT_URL": mqtt_url}
    proc = subprocess.run(
        [sys.executable, "-m", "amiflow_app", "demo", "--quick", "--out", str(tmp_path / "o")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2  # a configuration error
    assert "already holds meters" in proc.stderr + proc.stdout
    assert scalar(db_conn, "SELECT count(*) FROM amiflow.meters") == 1  # nothing added
