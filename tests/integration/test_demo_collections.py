"""``amiflow demo`` tells the collections story too: every account has a region and a collector, one installment
plan is kept and one broken (the ladder resumes after the break), and summary.json's ``collection_by_region``,
``collection_by_collector`` and ``installment_plans`` agree with the database and with the collection reports."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from billing_bridge.collection_kpis import collection_kpis
from billing_bridge.policy import load_ruleset

pytestmark = pytest.mark.timeout(240)


def test_the_demo_summary_carries_the_collection_tables(
    db_url: str, db_conn: psycopg.Connection[Any], mqtt_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "demo-out"
    env = {**os.environ, "AMIFLOW_DATABASE_URL": db_url, "AMIFLOW_MQTT_URL": mqtt_url, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "amiflow_app", "demo", "--quick", "--meters", "8", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=200,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())

    unassigned = db_conn.execute(
        "SELECT count(*) FROM amiflow.meters m LEFT JOIN amiflow.accounts a ON a.account = m.account"
        " WHERE a.region IS NULL OR a.collector IS NULL"
    ).fetchone()
    assert unassigned == (0,)
    states = dict(db_conn.execute("SELECT state, count(*) FROM amiflow.installment_plans GROUP BY 1").fetchall())
    assert s["installment_plans"] == {"created": 2, "kept": 1, "broken": 1} and states == {"completed": 1, "broken": 1}
    assert "installment plans: created 2, kept 1, broken 1" in proc.stdout
    row = db_conn.execute("SELECT account FROM amiflow.installment_plans WHERE state = 'broken'").fetchone()
    assert row is not None
    broken = row[0]
    kinds = [r[0] for r in db_conn.execute(
        "SELECT payload->>'type' FROM amiflow.outbox WHERE kind = 'notice' AND account = %s ORDER BY id", (broken,)
    )]  # fmt: skip
    after = kinds[kinds.index("installment_plan_broken") + 1 :]
    assert kinds[0] == "payment_reminder" and after[:1] == ["disconnect_warning"]  # the ladder resumed
    assert db_conn.execute("SELECT count(*) FROM amiflow.meter_commands WHERE account = %s", (broken,)).fetchone() == (
        0,
    )

    period = date.fromisoformat(s["collection_period"] + "-01")
    rs = load_ruleset("us_tx")
    for by in ("region", "collector"):
        rows = s[f"collection_by_{by}"]
        assert rows == [r.as_json(by) for r in collection_kpis(db_conn, rs, period, by)]
        page = (out / f"collection-{by}-{s['collection_period']}.html").read_text(encoding="utf-8")
        found = re.search(r'<script type="application/json" id="collection">(.*?)</script>', page, re.S)
        assert found is not None and json.loads(found.group(1)) == rows
        assert sum(Decimal(r["billed"]) for r in rows) == Decimal(s["bills_total"]["USD"])  # issued in that month
    assert {r["region"] for r in s["collection_by_region"]} == {"north", "central", "south"}
