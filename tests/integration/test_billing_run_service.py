"""The billing run with service periods (move-in / move-out) and a tariff change inside the month, on a real
PostgreSQL: partial bills per account with prorated fixed charges and minimum, a vacant meter skipped, overlapping
service refused, a new version of the tariff mid-month billed in two labelled parts, and ratchets that follow the
account, not the meter."""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import psycopg

from rating.bill import bill_json
from rating.billing_run import run_billing
from rating.compile import compile_tariff
from rating.engine import rate_block
from rating.service_store import add_service, end_service
from rating.tariff_files import load_tariff
from rating.tariff_store import store_tariff
from tests.integration.test_billing_run import PERIOD, TARIFF, TZ, _axis, _opts, _tariff, seed_meter

APRIL = date(2024, 4, 1)


def _issued(conn: psycopg.Connection[Any], meter: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT body FROM amiflow.bills WHERE meter = %s AND status = 'issued' ORDER BY period_start", (meter,)
    ).fetchall()
    return [r[0] for r in rows]


def _skips(conn: psycopg.Connection[Any]) -> dict[str, str]:
    return {r[0]: r[1] for r in conn.execute("SELECT meter, reason FROM amiflow.bill_run_skips").fetchall()}


def test_move_out_and_move_in_inside_the_month(db_url: str, db_conn: psycopg.Connection[Any]) -> None:
    _tariff(db_conn)
    wh = seed_meter(db_conn, "HOUSE", seed=3)
    seed_meter(db_conn, "EMPTYFLAT", seed=4)
    seed_meter(db_conn, "TWICE", seed=5)
    add_service(db_conn, "HOUSE", "A-OLD", date(2023, 6, 1))
    assert end_service(db_conn, "HOUSE", date(2024, 3, 11)) == 1  # moved out: March 1-10 are A-OLD's
    add_service(db_conn, "HOUSE", "A-NEW", date(2024, 3, 11))  # moved in on the 11th
    add_service(db_conn, "EMPTYFLAT", "A-GONE", date(2023, 1, 1), date(2024, 2, 15))  # vacant all March
    add_service(db_conn, "TWICE", "A-1", date(2024, 3, 1))
    add_service(db_conn, "TWICE", "A-2", date(2024, 3, 20))  # A-1 never moved out

    summary = run_billing(db_url, _opts()).summary
    assert summary["meters_billed"] == 2  # the two HOUSE bills
    assert _skips(db_conn) == {"EMPTYFLAT": "no_service", "TWICE": "overlapping_service"}
    old, new = _issued(db_conn, "HOUSE")
    assert (old["account"], old["period"]["start"], old["period"]["end"]) == ("A-OLD", "2024-03-01", "2024-03-10")
    assert (new["account"], new["period"]["start"], new["period"]["end"]) == ("A-NEW", "2024-03-11", "2024-03-31")
    assert old["bill_id"] == "HOUSE:2024-03-01:2024-03-10" and new["determinants"]["days"] == 21
    fixed = {b["account"]: next(li for li in b["lines"] if li["code"] == "base_services") for b in (old, new)}
    assert fixed["A-OLD"]["amount"] == "3.90" and fixed["A-NEW"]["amount"] == "8.19"  # 0.39 a day x 10 / 21

    # each bill is exactly the engine's bill of the meter's readings for the account's days
    tariff = compile_tariff(load_tariff(TARIFF)[0])
    ts = _axis(date(2024, 2, 1), APRIL)
    for bill, start, end in ((old, None, date(2024, 3, 11)), (new, date(2024, 3, 11), None)):
        block = rate_block(tariff, ts, wh[None, :], tz=TZ, period_start=PERIOD, period_end=APRIL,
                           active_from=[start], active_to=[end])  # fmt: skip
        expected = bill_json(block, 0, meter="HOUSE", account=bill["account"])
        assert (bill["lines"], bill["total"], bill["determinants"]) == (
            expected["lines"], expected["total"], expected["determinants"],
        )  # fmt: skip
    outbox = db_conn.execute("SELECT idempotency_key FROM amiflow.outbox ORDER BY 1").fetchall()
    assert [r[0] for r in outbox] == ["bill:HOUSE:2024-03-01:2024-03-10:v1", "bill:HOUSE:2024-03-11:2024-03-31:v1"]


def test_tariff_change_inside_the_month_is_billed_in_two_parts(db_url: str, db_conn: psycopg.Connection[Any]) -> None:
    _tariff(db_conn)
    v1 = load_tariff(TARIFF)[0]
    raised = v1.energy.model_copy(update={"rates": {k: [r * 2 for r in v] for k, v in v1.energy.rates.items()}})
    store_tariff(db_conn, v1.model_copy(update={"version": 2, "effective_from": date(2024, 3, 16), "energy": raised}))
    seed_meter(db_conn, "M", seed=6)
    assert run_billing(db_url, _opts()).summary["meters_billed"] == 1
    (bill,) = _issued(db_conn, "M")
    assert [(p["start"], p["end"], p["tariff"]["version"]) for p in bill["parts"]] == [
        ("2024-03-01", "2024-03-15", 1), ("2024-03-16", "2024-03-31", 2),
    ]  # fmt: skip
    assert bill["tariff"] == {"id": "res-tou-tiers", "version": 2} and bill["period"]["end"] == "2024-03-31"
    assert {li["part"] for li in bill["lines"]} == {0, 1}
    total = sum(float(p["total"]) for p in bill["parts"])
    assert float(bill["total"]) == round(total, 2)
    stored = db_conn.execute(
        "SELECT b.tariff_version, b.total::text, count(l.*) FROM amiflow.bills b JOIN amiflow.bill_lines l"
        " ON l.bill = b.id GROUP BY b.id"
    ).fetchone()
    assert stored == (2, bill["total"], len(bill["lines"]))
    assert run_billing(db_url, _opts()).summary["bills"]["unchanged"] == 1  # idempotent with parts too


def test_a_new_occupant_does_not_inherit_the_ratchet(db_url: str, db_conn: psycopg.Connection[Any]) -> None:
    for spec in load_tariff(TARIFF.with_name("commercial_tou_demand.toml")):
        store_tariff(db_conn, spec)
    for name in ("SAME", "MOVED"):
        seed_meter(db_conn, name, tariff="com-tou-demand", register_factor=None, seed=5)
    db_conn.execute(  # an hour at 20 kW on 2024-02-20 on both meters
        "UPDATE amiflow.readings SET value = 5000 WHERE channel_id = 1"
        " AND ts > '2024-02-20T20:00:00Z' AND ts <= '2024-02-20T21:00:00Z'"
    )
    add_service(db_conn, "MOVED", "A-FEB", date(2024, 1, 1), date(2024, 3, 1))
    add_service(db_conn, "MOVED", "A-MAR", date(2024, 3, 1))
    run_billing(db_url, _opts(period=date(2024, 2, 1)))
    run_billing(db_url, _opts())
    same_mar, moved_mar = _issued(db_conn, "SAME")[-1], _issued(db_conn, "MOVED")[-1]
    assert same_mar["determinants"]["billed_kw"]["facility_demand"]["all"] == "16.000"  # 80 % of February
    assert moved_mar["account"] == "A-MAR"
    assert float(moved_mar["determinants"]["billed_kw"]["facility_demand"]["all"]) < 1.0  # A-FEB's peak stays


def test_meters_without_service_periods_bill_as_before(db_url: str, db_conn: psycopg.Connection[Any]) -> None:
    _tariff(db_conn)
    wh = seed_meter(db_conn, "PLAIN", seed=8)
    run_billing(db_url, _opts())
    (bill,) = _issued(db_conn, "PLAIN")
    tariff = compile_tariff(load_tariff(TARIFF)[0])
    block = rate_block(tariff, _axis(date(2024, 2, 1), APRIL), wh[None, :], tz=TZ, period_start=PERIOD,
                       period_end=APRIL)  # fmt: skip
    assert bill["account"] == "A-PLAIN" and bill["lines"] == bill_json(block, 0, meter="PLAIN")["lines"]
    assert "parts" not in bill and np.isclose(float(bill["total"]), float(bill_json(block, 0, meter="x")["total"]))
