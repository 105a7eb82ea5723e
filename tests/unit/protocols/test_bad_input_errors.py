"""Decoders raise only amiflow's errors on bad input (issue 19): a Modbus map CSV row shorter than its header is a
bad_map, an AARQ/AARE with an unknown mechanism id is a FrameError, and mutated inputs never let another exception
out (hypothesis, fixed seed)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from amiflow.errors import AmiflowError, ConfigError, FrameError
from amiflow_app.cli import main
from protocols.dlms.acse import Aare, Aarq, AssociationResult, ContextName, Mechanism, Rlre, Rlrq
from protocols.dlms.describe import describe_apdu
from protocols.modbus.maps import read_map_csv

HEADER = "name,address,function_code,type,registers,unit"


def test_a_short_map_row_is_bad_map_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "short.csv"
    path.write_text(f"{HEADER}\nvoltage,0,4,float32,2,V\ncurrent,6\n")
    assert main(["decode", "modbus-map", str(path)]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["issues"] == [
        {"code": "bad_map", "detail": "register map short, line 3: 2 fields, the header names 6"}
    ]
    with pytest.raises(ConfigError, match="line 2: 1 fields"):
        read_map_csv("name,address\nvoltage\n", "m")


def _with_mechanism(apdu: bytes, mechanism: int) -> bytes:
    """``apdu`` with the last byte of its mechanism-name OID (tag 8B or 89) replaced."""
    at = apdu.index(bytes.fromhex("608574050802")) + 6
    return apdu[:at] + bytes((mechanism,)) + apdu[at + 1 :]


@pytest.mark.parametrize("mechanism", [7, 9, 0xFF])
def test_an_unknown_mechanism_id_is_a_frame_error(mechanism: int) -> None:
    aarq = _with_mechanism(Aarq(ContextName.LN, Mechanism.LLS, b"secret").to_bytes(), mechanism)
    with pytest.raises(FrameError, match=f"AARQ mechanism: unknown authentication mechanism id {mechanism}"):
        describe_apdu(aarq)
    aare = _with_mechanism(Aare(mechanism=Mechanism.LLS).to_bytes(), mechanism)
    with pytest.raises(FrameError, match=f"AARE mechanism: unknown authentication mechanism id {mechanism}"):
        describe_apdu(aare)


def test_an_aare_diagnostic_with_two_elements_is_a_frame_error() -> None:
    context_and_result = Aare().to_bytes()[2:18]  # A1 09 <context OID>, A2 03 02 01 00
    body = context_and_result + bytes.fromhex("a30aa103020100a103020100")
    with pytest.raises(FrameError, match="AARE diagnostic: expected one element, found 2"):
        describe_apdu(bytes((0x61, len(body))) + body)


_TOKENS = ["0", "0x10", "4", "float32", "int16", "uint32", "2", "V", "", "-1", "abc", "1e9", "W", "x_SF", "RW", '"']
_ADDRESSES = ["0", "6", "0x10", "-1", "65536", "abc"]
_OPTIONAL_COLUMNS = ["function_code", "registers", "unit", "scale", "obis", "access", "count"]
_OPTIONS = ["word_order=little", "word_order=x", "max_registers=1", "max_registers=a", "even=false", "max_gap=z"]


@st.composite
def map_csvs(draw: st.DrawFn) -> str:
    """A map CSV: options, a header in any order, rows of plausible and odd values cut short or run long."""
    lines = ["# " + " ".join(draw(st.lists(st.sampled_from(_OPTIONS), max_size=3)))]
    extra = draw(st.lists(st.sampled_from(_OPTIONAL_COLUMNS), unique=True, max_size=4))
    columns = draw(st.permutations(["name", "address", "type", *extra]))
    lines.append(",".join(columns))
    for _ in range(draw(st.integers(1, 4))):
        row = [draw(st.sampled_from(_ADDRESSES if c == "address" else _TOKENS) | st.text(max_size=4)) for c in columns]
        lines.append(",".join([*row, "extra", "1"][: draw(st.integers(1, len(row) + 2))]))
    return "\n".join(lines)


_APDUS = [
    Aarq().to_bytes(),
    Aarq(ContextName.LN, Mechanism.LLS, b"secret").to_bytes(),
    Aarq(ContextName.LN_CIPHERED, Mechanism.HLS_GMAC, b"12345678", b"ABCDEFGH").to_bytes(),
    Aare().to_bytes(),
    Aare(AssociationResult.REJECTED_PERMANENT, 13, mechanism=Mechanism.LLS, user_information=b"\x0e\x01").to_bytes(),
    Rlrq().to_bytes(),
    Rlre().to_bytes(),
]


@st.composite
def acse_apdus(draw: st.DrawFn) -> bytes:
    """A valid ACSE APDU with a few bytes replaced, cut out or inserted (the tag byte kept: ACSE, not xDLMS)."""
    data = bytearray(draw(st.sampled_from(_APDUS)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(1, len(data)))
        edit = draw(st.sampled_from(["replace", "cut", "insert"]))
        if edit == "replace" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif edit == "cut":
            del data[at : at + draw(st.integers(1, 3))]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=3))
    return bytes(data)


@seed(19)
@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(map_csvs())
def test_map_reader_raises_only_amiflow_errors(text: str) -> None:
    with contextlib.suppress(AmiflowError):  # anything else fails the test
        read_map_csv(text, "fuzz").plan()


@seed(19)
@settings(max_examples=500, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(acse_apdus())
def test_acse_describer_raises_only_amiflow_errors(data: bytes) -> None:
    with contextlib.suppress(AmiflowError):
        describe_apdu(data)
