"""``amiflow rate --what-if``: any tariff rates any period, its effective dates ignored, and the bill says so."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from amiflow_app.cli import main


def _tariff(path: Path, effective_from: str, versions: tuple[tuple[int, str], ...] = ((1, "0.30"),)) -> Path:
    items = [
        {"id": "future-flat", "version": v, "currency": "EUR", "effective_from": effective_from,
         "tou": {"default": "all"}, "energy": {"rates": {"all": rate}},
         "fixed": [{"code": "standing", "amount": "5.00", "per": "month"}]}
        for v, rate in versions
    ]  # fmt: skip
    path.write_text(json.dumps(items[0] if len(items) == 1 else {"tariffs": items}), encoding="utf-8")
    return path


def _usage(path: Path) -> Path:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    rows = [
        f"{(start + timedelta(minutes=15 * i)).isoformat().replace('+00:00', 'Z')},0.25" for i in range(1, 30 * 96 + 1)
    ]
    path.write_text("ts,kwh\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_what_if_rates_outside_the_effective_dates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    usage = _usage(tmp_path / "usage.csv")
    future = _tariff(tmp_path / "future.json", "2027-01-01")
    args = ["rate", "--tariff", str(future), "--usage", str(usage), "--period", "2026-11"]
    assert main(args) == 1
    assert "effective" in capsys.readouterr().err
    assert main([*args, "--what-if"]) == 0
    bill = json.loads(capsys.readouterr().out)
    assert bill["hypothetical"] is True and bill["tariff"] == {"id": "future-flat", "version": 1}
    # the same tariff effective for the period rates to the same money, and its bill has no such mark
    current = _tariff(tmp_path / "current.json", "2026-01-01")
    assert main(["rate", "--tariff", str(current), "--usage", str(usage), "--period", "2026-11"]) == 0
    real = json.loads(capsys.readouterr().out)
    assert "hypothetical" not in real and real["total"] == bill["total"] == "221.00"  # 720 kWh x 0.30 + 5.00


def test_what_if_takes_the_latest_version_for_every_month(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    usage = _usage(tmp_path / "usage.csv")
    tariff = _tariff(tmp_path / "t.json", "2030-01-01", ((1, "0.30"), (2, "0.10")))
    assert main(["rate", "--tariff", str(tariff), "--usage", str(usage), "--what-if"]) == 0
    bills = json.loads(capsys.readouterr().out)
    assert [b["tariff"]["version"] for b in bills] == [2] and bills[0]["hypothetical"] is True
    assert bills[0]["total"] == "77.00"
