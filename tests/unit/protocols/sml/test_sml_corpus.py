"""Every capture of tests/data/sml/ (see SOURCES.md) decodes to its expected values, and to those its source states."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from protocols.sml import GetListRes, decode_capture, decode_sml_capture

DATA = Path(__file__).parents[3] / "data" / "sml"
EXPECTED: dict[str, dict[str, object]] = json.loads((DATA / "expected.json").read_text())
RECEIVED = 1_700_000_000
CAPTURES = sorted(p.name for p in DATA.iterdir() if p.suffix in (".hex", ".bin"))


def test_every_capture_has_an_expectation_and_a_source() -> None:
    sources = (DATA / "SOURCES.md").read_text()
    assert sorted(EXPECTED) == CAPTURES
    for name in CAPTURES:
        assert f"`{name}`" in sources, name


@pytest.mark.parametrize("name", CAPTURES)
def test_capture_decodes_to_the_expected_values(name: str) -> None:
    want = EXPECTED[name]
    cap = decode_capture((DATA / name).read_bytes(), received_ts=RECEIVED)
    assert len(cap.files) == want["files"]
    assert cap.meter == want["meter"]
    assert [f.crc_variant for f in cap.files] == want["crc"]
    assert sorted({i.code for i in cap.issues}) == want["issues"]
    assert len(cap.batch) == want["rows"]
    assert sorted(set(cap.batch.ts.tolist())) == want["ts"]
    n = cap.files[0].readings if cap.files else 0
    rows = list(zip(cap.batch.obis, cap.batch.value, cap.batch.unit, strict=True))[:n]
    got = {str(o): f"{float(v)!r} {u}".strip() for o, v, u in rows}
    assert got == want["first_file"]


def _first(name: str) -> dict[str, float]:
    batch, _ = decode_sml_capture((DATA / name).read_bytes(), received_ts=RECEIVED)
    out: dict[str, float] = {}
    for o, v in zip(batch.obis.tolist(), batch.value.tolist(), strict=True):
        out.setdefault(o, v)
    return out


def test_values_the_sources_state() -> None:
    assert _first("emh_ehz_smartmeter-obis.hex")["1-0:1.8.1"] == 15338.5557e3  # smartmeter-obis asserts kWh
    ebz = _first("ebz_dd3_smllib_issue8.hex")  # sml2mqtt's analysis of the same file
    assert (ebz["1-0:1.8.0"], ebz["1-0:16.7.0"], ebz["1-0:36.7.0"]) == (450091.89911, 352.89, 82.26)
    assert (ebz["1-0:56.7.0"], ebz["1-0:76.7.0"], ebz["1-0:2.8.0"]) == (27.06, 243.57, 2198.0)
    lgz = _first("landisgyr_sml2mqtt_body.hex")  # sml2mqtt: 5171.9237 kWh, 251 W
    assert (lgz["1-0:1.8.0"], lgz["1-0:16.7.0"]) == (5171923.7, 251.0)


def test_makers_covered() -> None:
    meters = {str(EXPECTED[n]["meter"]) for n in CAPTURES}
    for flag in ("EMH", "ISK", "ESY", "ITR", "DZG", "LGZ", "HLY", "DNT"):
        assert any(f" {flag}" in m for m in meters), flag


def test_hex_text_forms_are_accepted() -> None:
    raw = (DATA / "itron_openway3hz_sml-rs.bin").read_bytes()
    tasmota = " ".join(f"{b:02x}h" for b in raw).encode()  # the Energy2Shelly / Tasmota log style
    spaced = " ".join(f"0x{b:02X}," for b in raw).encode()
    for text in (raw.hex().encode(), tasmota, spaced):
        cap = decode_capture(text, received_ts=RECEIVED)
        assert cap.meter == "1 ITR00 55113102" and len(cap.batch) == 2
    assert decode_capture(b"zz", hex=True).issues[0].code == "bad_hex"
    assert decode_capture(b"hello", hex=False).issues[0].code == "no_sml"


def test_describe_lists_the_messages() -> None:
    cap = decode_capture((DATA / "handmade_attention_requests.hex").read_bytes(), received_ts=RECEIVED)
    described = cap.files[0].describe()
    assert described["messages"] == ["PublicOpen.Req", "0x0700", "Attention.Res", "PublicClose.Req"]
    body = next(m.body for m in cap.files[0].messages if m.tag == 0xFF01)
    assert not isinstance(body, GetListRes) and getattr(body, "attention_no", b"").hex() == "8181c7c7fe03"
