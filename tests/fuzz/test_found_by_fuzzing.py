"""Inputs the fuzz runs found that let a foreign exception out, each now answered with amiflow's own error (or, for
a meter's value, with no value): URDB items of the wrong shape, a rate too large for the exact tables, an hour range
that is not numbers, a SunSpec scale factor outside its range, a registry CSV that is not UTF-8, an IEC 62056-21
option select line with a non-ASCII byte, a wireless M-Bus frame too short for its CI field, URDB demand months that
are booleans, a CSV the csv module refuses, a URI with an unbalanced IPv6 bracket or a port out of range."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from amiflow.db.registry import import_meters_csv
from amiflow.errors import ConfigError, FrameError, RatingError
from amiflow.uri import parse_meter_uri, parse_mqtt_url
from amiflow_app.cli import main
from protocols.iec62056_21 import IecMeter, OptionSelect
from protocols.mbus import crc16_en13757, decode_wmbus
from protocols.modbus import decode_block, sunspec_model
from protocols.modbus.registers import RegisterMap
from rating.compile import compile_tariff
from rating.tariff_files import load_tariff, tariff_from_data
from rating.tou import parse_rules

DATA = Path(__file__).resolve().parents[1] / "data"
ROOT = Path(__file__).resolve().parents[2]


def _urdb() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / "urdb" / "smud_ci_tod3_2025.json").read_text())
    return data


def _item(doc: dict[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = doc["items"][0] if "items" in doc else doc
    return item


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("energyratestructure", 7, "expected a list"),
        ("energyratestructure", [[None]], "expected a tier object"),
        ("energyratestructure", [[{"rate": "NaN"}]], "not a number"),
        ("energyratestructure", [[{"rate": "Infinity"}]], "not a number"),
        ("energyratestructure", [[{"rate": "1-0:1.8.0"}]], "not a number"),
        ("fixedchargeunits", ["$/month"], "not supported"),
        ("startdate", "1-0:1.8.0", "expected a whole number"),
        ("startdate", 2**63, "outside the years"),
        ("demandwindow", "15 min", "expected a whole number"),
        ("flatdemandmonths", 3, "expected a list"),
        ("demandratchetpercentage", 80, "expected a list"),
    ],
)
def test_a_urdb_item_of_the_wrong_shape_is_a_rating_error(field: str, value: Any, message: str) -> None:
    doc = copy.deepcopy(_urdb())
    _item(doc)[field] = value
    if field == "fixedchargeunits":
        _item(doc)["fixedchargefirstmeter"] = 10
    with pytest.raises(RatingError, match=message):
        tariff_from_data(doc)


def test_a_rate_too_large_for_the_exact_tables_is_a_rating_error() -> None:
    spec = load_tariff(ROOT / "rating" / "tariffs" / "residential_net_metering.json")[0]
    rates = {p: [Decimal("1e30")] * len(r) for p, r in spec.energy.rates.items()}
    huge = spec.model_copy(update={"energy": spec.energy.model_copy(update={"rates": rates})})
    with pytest.raises(RatingError, match="too large for a rate or charge"):
        compile_tariff(huge)


def test_an_hour_range_that_is_not_numbers_is_a_rating_error() -> None:
    with pytest.raises(RatingError, match="bad hour range '16-2114-16'"):
        parse_rules(["peak: weekdays 16-21  14-16"], "off_peak", {})


def test_a_sunspec_scale_factor_outside_minus_10_to_10_gives_no_value() -> None:
    model = sunspec_model(203, 40070)
    by_name = model.by_name()
    watts, sf = by_name["W"], by_name[by_name["W"].scale_ref or ""]
    regmap = RegisterMap("m", (watts, sf), sunspec=True)
    for factor, expected in ((-2, 12.34), (400, None), (-400, None)):
        blocks = {(3, watts.address): [1234], (3, sf.address): [factor & 0xFFFF]}
        assert decode_block(regmap, blocks).get("W") == expected


def test_a_registry_csv_that_is_not_utf8_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "meters.csv"
    path.write_bytes("meter,protocol,uri,timezone,tariff,account\nZähler,mqtt,,UTC,,\n".encode("latin-1"))
    assert main(["meters", "import", str(path)]) == 2
    assert "not UTF-8 text (byte 44)" in capsys.readouterr().err


def test_an_option_select_line_with_a_non_ascii_byte_is_skipped_by_the_meter() -> None:
    meter = IecMeter()
    meter.receive_data(b"\x06\xff50\r\n\x06050\r\n")
    assert meter.next_event() == OptionSelect("0", "5", "0")  # the bad line is discarded, the good one read
    assert meter.discarded == 4


def test_a_wmbus_format_a_frame_with_l_9_is_a_frame_error() -> None:
    block = bytes((9, 0x44)) + bytes.fromhex("2d2c785634120107")  # L = 9: C, M, A - and no CI field
    raw = block + crc16_en13757(block).to_bytes(2, "big")
    with pytest.raises(FrameError, match="no room for a link header and CI field"):
        decode_wmbus(raw, fmt="A")


def test_urdb_flat_demand_months_of_booleans_are_a_rating_error() -> None:
    doc = copy.deepcopy(_urdb())
    item = _item(doc)
    item["flatdemandstructure"] = [[{"rate": 5}]]
    item["flatdemandmonths"] = [False] * 12
    with pytest.raises(RatingError, match="flatdemandmonths: expected 12 period indices"):
        tariff_from_data(doc)


def test_a_registry_csv_the_csv_module_refuses_is_a_config_error() -> None:
    text = "meter,protocol,uri,timezone,tariff,account\nM1,mqtt,," + "x" * 200_000 + ",,\n"  # past the field limit
    with pytest.raises(ConfigError, match=r"meters\.csv line 2: not readable as CSV"):
        import_meters_csv(None, text, source="meters.csv")  # type: ignore[arg-type]  # refused before the database


@pytest.mark.parametrize("uri", ["modbus+tcp://10.0.0.5q[:502?unit=1", "dlms+tcp://[::1:4059"])
def test_a_meter_uri_with_an_unbalanced_bracket_is_a_config_error(uri: str) -> None:
    with pytest.raises(ConfigError, match="Invalid IPv6 URL"):
        parse_meter_uri(uri)


@pytest.mark.parametrize("url", ["mqtt://broker:99999", "mqtt://[::1:1883"])
def test_an_mqtt_url_with_a_bad_port_or_bracket_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="AMIFLOW_MQTT_URL: expected mqtt://host:port"):
        parse_mqtt_url(url)
