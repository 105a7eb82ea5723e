"""The tariff file model: TOU rules, validation messages, versions, files, the shipped examples."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest

from amiflow.errors import RatingError
from rating.compile import compile_tariff
from rating.tariff import HolidaySpec, select_version
from rating.tariff_files import load_tariff, tariff_from_data
from rating.tou import parse_rules

from .conftest import BASE

EXAMPLES = sorted((Path(__file__).resolve().parents[3] / "rating" / "tariffs").iterdir())


def test_rules_later_win_wrap_and_seasons() -> None:
    names, s = parse_rules(
        ["peak: weekdays 16-21 Jun-Sep", "night: all 22-6", "peak: weekends 17-19 winter"],
        "off",
        {"winter": ["Nov", "Dec", "Jan"]},
    )
    assert names == ("off", "peak", "night")
    assert s[0, 6, 16:21].tolist() == [1] * 5 and s[0, 6, 21] == 0 and s[0, 4, 16] == 0
    assert s[1, 0, 17:19].tolist() == [1, 1] and s[1, 6, 17] == 0
    assert s[0, 3, 22:24].tolist() == [2, 2] and s[0, 3, 0:6].tolist() == [2] * 6 and s[0, 3, 6] == 0
    assert (s[2] == s[1]).all()  # holidays follow weekends when no rule names them


def test_month_range_wraps_over_new_year() -> None:
    _, s = parse_rules(["w: all all Nov-Feb"], "x", {})
    assert [int(s[0, m, 0]) for m in range(12)] == [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("peak weekdays 16-21", "cannot read"),
        ("peak: fridays 16-21", "unknown day type"),
        ("peak: all 16-25", "bad hour range"),
        ("peak: all 5-5", "bad hour range"),
        ("peak: all 1-2 Foo", "unknown month"),
    ],
)
def test_bad_rules(rule: str, message: str) -> None:
    with pytest.raises(RatingError, match=message):
        parse_rules([rule], "off", {})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"energy": {"rates": {"off": ["0.1", "0.2"]}}}, "give 1 rate or 1"),
        ({"energy": {"rates": {"off": "0.1"}, "tier_limits_kwh": ["200", "100"]}}, "ascending"),
        ({"effective_to": "2019-01-01"}, "effective_to must be after"),
        ({"tou": {"rules": ["a: all 1-2"]}}, "default"),
        ({"tou": {"periods": ["off"], "weekday": [[0] * 24] * 11}}, "12 rows"),
        ({"fixed": [{"code": "x", "amount": "1"}], "taxes": [{"code": "x", "percent": "1"}]}, "unique"),
        ({"demand": [{"rates": {"peak": "1"}, "tou": "energy", "ratchet_pct": "80"}]}, "monthly peak"),
        ({"export": {"mode": "credit"}}, "needs export.rate"),
        ({"surprise": 1}, "Extra inputs"),
    ],
)
def test_invalid_specs_say_what_is_wrong(change: dict[str, object], message: str) -> None:
    with pytest.raises(RatingError, match=message):
        tariff_from_data({**BASE, **change})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tou": {"default": "off", "rules": ["peak: all 1-2"]}}, r"no energy rate for TOU period\(s\) \['peak'\]"),
        ({"energy": {"rates": {"off": "0.1", "nope": "1"}}}, "unknown periods"),
        ({"energy": {"rates": {"off": "0.1234567890123"}}}, "12 decimal"),
        ({"currency": "XYZ"}, "minor unit"),
        ({"taxes": [{"code": "t", "percent": "1", "applies_to": ["energyy"]}]}, "unknown lines"),
        ({"holidays": {"country": "ZZ"}}, None),
    ],
)
def test_compile_errors(change: dict[str, object], message: str | None) -> None:
    spec = tariff_from_data({**BASE, **change})[0]
    if message is None:  # an unknown holiday calendar fails when holidays are first needed
        with pytest.raises(RatingError, match="holiday calendar"):
            compile_tariff(spec).holiday_days([2024])
        return
    with pytest.raises(RatingError, match=message):
        compile_tariff(spec)


def test_select_version_by_effective_dates() -> None:
    v1 = tariff_from_data({**BASE, "version": 1, "effective_from": "2023-01-01", "effective_to": "2024-03-01"})[0]
    v2 = tariff_from_data({**BASE, "version": 2, "effective_from": "2024-03-01"})[0]
    assert select_version([v1, v2], date(2024, 2, 1), date(2024, 3, 1)).version == 1
    assert select_version([v1, v2], date(2024, 3, 1), date(2024, 4, 1)).version == 2
    with pytest.raises(RatingError, match="splits a period at a change"):
        select_version([v1, v2], date(2024, 2, 15), date(2024, 3, 15))
    with pytest.raises(RatingError, match="no version"):
        select_version([v1], date(2022, 1, 1), date(2022, 2, 1))


def test_holiday_calendar_extra_and_removed() -> None:
    cal = HolidaySpec(country="US", extra=[date(2024, 12, 24)], remove=[date(2024, 7, 4)])
    days = {date.fromordinal(date(1970, 1, 1).toordinal() + int(d)) for d in cal.days([2024])}
    assert date(2024, 12, 25) in days and date(2024, 12, 24) in days and date(2024, 7, 4) not in days


def test_several_versions_in_one_file_and_exact_decimals(tmp_path: Path) -> None:
    f = tmp_path / "t.json"
    f.write_text('{"tariffs": [{"id": "a", "effective_from": "2024-01-01", "tou": {"default": "off"},'
                 ' "energy": {"rates": {"off": 0.1}}}, {"id": "a", "version": 2, "effective_from": "2025-01-01",'
                 ' "tou": {"default": "off"}, "energy": {"rates": {"off": "0.2"}}}]}')  # fmt: skip
    specs = load_tariff(f)
    assert [s.version for s in specs] == [1, 2]
    assert str(specs[0].energy.rates["off"][0]) == "0.1"  # a JSON number, read as a decimal, not 0.1000000000000000055


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("id = ")
    with pytest.raises(RatingError, match=r"bad\.toml: not valid TOML"):
        load_tariff(bad)
    with pytest.raises(RatingError, match="cannot read"):
        load_tariff(tmp_path / "missing.json")
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"id": "x"}')
    with pytest.raises(RatingError, match=r"wrong\.json: effective_from: Field required"):
        load_tariff(wrong)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_shipped_examples_compile(path: Path) -> None:
    (spec,) = load_tariff(path)
    t = compile_tariff(spec)
    assert t.schedule.shape == (3, 12, 24) and np.isin(t.schedule, np.arange(len(t.periods))).all()
