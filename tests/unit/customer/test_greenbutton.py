"""The ESPI feed from synthetic usage (no database): schema-valid, exact sums, quality codes, multipliers, CSV."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from amiflow.types import QualityFlag
from billing_bridge.customer import espi_feed, espi_qualities, usage_csv
from billing_bridge.customer.greenbutton import ATOM_NS, ESPI_NS, power_of_ten
from billing_bridge.customer.usage import Channel, MeterInfo, MeterUsage

ESPI_XSD = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "espi" / "usage.xsd"
NS = {"a": ATOM_NS, "e": ESPI_NS}
TZ = "Europe/Berlin"


def _usage(wh: np.ndarray, quality: np.ndarray | None = None, export: bool = False) -> MeterUsage:
    lo = int(datetime(2026, 3, 28, tzinfo=ZoneInfo(TZ)).timestamp())  # DST starts on the 29th: a 23-hour day
    ts = lo + 900 * np.arange(1, len(wh) + 1, dtype=np.int64)
    q = np.zeros(len(ts), np.int32) if quality is None else quality.astype(np.int32)
    method = np.where(q & QualityFlag.ESTIMATED, 1, 0).astype(np.int8)
    channels = [Channel("1-0:1.29.0", "import", ts, wh, q, method, 900, False)]
    if export:
        channels.append(Channel("1-0:2.29.0", "export", ts, wh / 2, q * 0, method * 0, 900, True))
    meter = MeterInfo("M-7", "ACC 7", TZ, "res-tou-tiers")
    return MeterUsage(meter, date(2026, 3, 28), date(2026, 3, 31), lo, int(ts[-1]), tuple(channels))


def _validate(data: bytes) -> None:
    xmlschema = pytest.importorskip("xmlschema", reason="xmlschema is in the test extra (pip install -e '.[test]')")
    if not ESPI_XSD.exists():
        pytest.skip(f"the ESPI schemas are not at {ESPI_XSD}")
    errors = list(xmlschema.XMLSchema(str(ESPI_XSD)).iter_errors(data.decode()))
    assert not errors, str(errors[0])[:2000]


def test_feed_is_valid_with_exact_sums_and_day_blocks() -> None:
    n = 96 + 92 + 96  # the 28th, the 23-hour 29th, the 30th
    wh = np.round(np.linspace(10, 400, n), 2)
    quality = np.zeros(n, np.int32)
    quality[[3, 5]] = [QualityFlag.ESTIMATED, QualityFlag.SPIKE | QualityFlag.EDITED]
    data = espi_feed(
        _usage(wh, quality, export=True), currency="EUR", updated=datetime(2026, 4, 1, tzinfo=ZoneInfo("UTC"))
    )
    _validate(data)
    root = ET.fromstring(data)
    types = root.findall("a:entry/a:content/e:ReadingType", NS)
    assert [t.findtext("e:flowDirection", None, NS) for t in types] == ["1", "19"]
    assert (
        types[0].findtext("e:currency", None, NS) == "978"
        and types[0].findtext("e:powerOfTenMultiplier", None, NS) == "-2"
    )
    blocks = root.findall("a:entry/a:content/e:IntervalBlock", NS)
    assert [len(b.findall("e:IntervalReading", NS)) for b in blocks[:3]] == [96, 92, 96]
    values = [int(v.text or 0) for b in blocks[:3] for v in b.iterfind("e:IntervalReading/e:value", NS)]
    assert sum(values) == round(float(wh.sum()) * 100)
    readings = blocks[0].findall("e:IntervalReading", NS)
    codes = [[int(q.text or 0) for q in r.iterfind("e:ReadingQuality/e:quality", NS)] for r in readings[:6]]
    assert codes == [[], [], [], [9], [], [7, 10]]
    assert root.findtext("a:updated", None, NS) == "2026-04-01T00:00:00Z"
    assert espi_feed(_usage(wh), updated=datetime(2026, 4, 1, tzinfo=ZoneInfo("UTC"))).count(b"<espi:currency>") == 0


@pytest.mark.parametrize(
    ("values", "m"), [([1.0, 20.0], 0), ([1.5, 2.0], -1), ([0.25], -2), ([0.125], -3), ([1 / 3], -3)]
)
def test_power_of_ten(values: list[float], m: int) -> None:
    assert power_of_ten(np.array(values)) == m


def test_power_of_ten_of_volumes_goes_to_a_millilitre() -> None:
    """ESPI's multipliers skip -4 and -5: a tenth of a litre (0.0001 m3) needs -6 where m3 allows it."""
    assert power_of_ten(np.array([0.012, 0.0134]), -6) == -6  # 13.4 L: -3 would round it
    assert power_of_ten(np.array([0.012, 0.013]), -6) == -3  # whole litres
    assert power_of_ten(np.array([0.0134]), -3) == -3  # energy stops at a milliwatt-hour (rounded)


def test_quality_mapping() -> None:
    assert espi_qualities(0, 0) == ()
    assert espi_qualities(QualityFlag.ESTIMATED, 1) == (9,)  # interpolated
    assert espi_qualities(QualityFlag.ESTIMATED | QualityFlag.EDITED, 2) == (8,)  # like-day, replacing a reading
    assert espi_qualities(QualityFlag.EDITED, 0) == (7,)
    assert espi_qualities(QualityFlag.SUSPECT | QualityFlag.UNVERIFIED_METER, 0) == (10, 14)
    assert espi_qualities(QualityFlag.BACKFILLED | QualityFlag.OUTAGE, 0) == ()


def test_csv_rows() -> None:
    wh = np.array([100.0, 250.5, 0.0])
    quality = np.array([0, QualityFlag.ESTIMATED | QualityFlag.EDITED, 0])
    lines = usage_csv(_usage(wh, quality, export=True)).splitlines()
    assert lines[0] == "start_utc,end_utc,local_start,kwh_import,kwh_export,quality"
    assert lines[1] == "2026-03-27T23:00:00Z,2026-03-27T23:15:00Z,2026-03-28T00:00:00+01:00,0.100000,0.050000,"
    assert lines[2].endswith(",0.250500,0.125250,estimated;edited")
    assert len(lines) == 4
