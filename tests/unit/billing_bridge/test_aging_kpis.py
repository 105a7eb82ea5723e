"""Receivables by age band and the KPI arithmetic: bands by days past due, FIFO like the arrears, the rate and DSO,
totals per currency, and the tables built from them."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from amiflow_app.report.collection_tables import CSV_COLUMNS, kpi_csv, kpi_text
from billing_bridge.aging import AGE_BANDS, age_bands, band_of, open_debts
from billing_bridge.arrears import Debt, Payment, compute_arrears
from billing_bridge.collection_kpis import GroupKpis, month_starts, totals

D = Decimal
TODAY = date(2026, 6, 1)


def test_bands_cover_every_day_once() -> None:
    assert [name for name, _, _ in AGE_BANDS] == ["0-30", "31-60", "61-90", ">90"]
    assert [band_of(d) for d in (0, 1, 30, 31, 60, 61, 90, 91, 4000)] == [0, 0, 0, 1, 1, 2, 2, 3, 3]
    with pytest.raises(ValueError):
        band_of(-1)


def test_age_bands_apply_payments_oldest_first_like_the_arrears() -> None:
    debts = [
        Debt("A", "b1", D("100"), date(2026, 1, 15)),  # 137 days
        Debt("A", "b2", D("100"), date(2026, 3, 20)),  # 73 days
        Debt("A", "b3", D("100"), date(2026, 5, 10)),  # 22 days
        Debt("A", "b4", D("100"), date(2026, 6, 10)),  # not due
    ]
    paid, reversed_ = datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 4, 2, tzinfo=UTC)
    pays = [Payment("A", D("150"), paid), Payment("A", D("-20"), reversed_)]
    assert age_bands(debts, pays, TODAY) == (D("100"), D(0), D("70"), D(0))
    assert sum(age_bands(debts, pays, TODAY)) == compute_arrears(debts, pays, TODAY)["A"].overdue_amount
    assert sum(left for _, left in open_debts(debts, pays)) == D("270")
    assert open_debts(debts, [Payment("A", D("-5"), datetime(2026, 4, 2, tzinfo=UTC))])[0][1] == D("100")


def test_rate_and_dso_and_totals() -> None:
    a = GroupKpis("north", "USD", accounts=2, billed=D("200"), collected=D("150"), receivables=D("300"), days=30)
    assert a.collection_rate == D("0.7500") and a.dso_days == D("45.0")
    none = GroupKpis("south", "USD", accounts=1, collected=D("5"))
    assert none.collection_rate is None and none.dso_days is None
    eur = GroupKpis("west", "EUR", accounts=1, billed=D("10"))
    t = totals([a, none, eur])
    assert t["USD"].accounts == 3 and t["USD"].collected == D("155") and t["EUR"].billed == D("10")
    assert month_starts(date(2026, 2, 1), 3) == [date(2025, 12, 1), date(2026, 1, 1), date(2026, 2, 1)]


def test_the_tables_carry_the_summary_names() -> None:
    rows = [GroupKpis("north", "USD", accounts=2, billed=D("200"), collected=D("150"), plans_active=1)]
    parsed = list(csv.DictReader(io.StringIO(kpi_csv(rows, "region"))))
    assert list(parsed[0]) == ["region", *CSV_COLUMNS]
    assert parsed[0]["collection_rate"] == "0.7500" and parsed[0]["dso_days"] == "0.0"
    assert set(rows[0].as_json("region")) == {"region", *CSV_COLUMNS}
    text = kpi_text(rows, "region", list(totals(rows).values()))
    assert "75.0%" in text and text.splitlines()[-1].startswith("total")
