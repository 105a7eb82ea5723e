"""``amiflow decode``: the readings payload shape for P1 and IEC 62056-21 captures, exit codes, hex input, stdin."""

from __future__ import annotations

import importlib
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from amiflow_app.cli import main
from protocols.decode import decode_bytes
from protocols.iec62056_21 import build_readout
from protocols.p1 import dsmr5_telegram

TS = 1_790_000_000  # 2026-09-21T14:13:20Z


def _telegram(meter: str = "E0012345") -> bytes:
    return dsmr5_telegram(equipment_id=meter, ts=TS, import_wh=(1234567.0, 7654321.0), gas_m3=(12.5, TS - 300))


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any], str]:
    code = main(["decode", *argv])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else {}), err


def test_p1_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "telegram.txt"
    path.write_bytes(b"tail of an earlier one!1234\r\n" + _telegram() + _telegram("E2"))
    code, result, _ = _run(["p1", str(path)], capsys)
    assert code == 0
    assert result["meter"] == "E0012345" and result["issues"] == []
    assert [f["header"] for f in result["frames"]] == ["AMF5\\amiflow-sim"] * 2
    readings = result["readings"]
    assert {"obis": "1-0:1.8.1", "ts": "2026-09-21T14:13:20Z", "value": 1234567.0, "unit": "Wh"} in readings
    assert {"obis": "0-1:24.2.1", "ts": "2026-09-21T14:08:20Z", "value": 12.5, "unit": "m3"} in readings


def test_p1_bad_crc_exits_1_with_its_issue(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = _telegram()
    bang = raw.rindex(b"!")
    path = tmp_path / "bad.txt"
    path.write_bytes(raw[: bang + 1] + b"0000\r\n")
    code, result, _ = _run(["p1", str(path)], capsys)
    assert code == 1
    assert [i["code"] for i in result["issues"]] == ["bad_crc"]
    assert result["readings"] == []


def test_p1_nothing_found(tmp_path: Path) -> None:
    result = decode_bytes("p1", b"no telegram here")
    assert [i["code"] for i in result["issues"]] == ["no_telegram"]


def test_iec_exchange_and_hex_from_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    capture = b"/?!\r\n/ISK5\\2MT382\r\n\x06050\r\n" + build_readout(
        ["0-0:C.1.0(123)", "1.8.0(00100.5*kWh)", "0.9.1(101010)", "0.9.2(261126)"]
    )
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(capture.hex(" ").encode())))
    code, result, _ = _run(["iec62056-21", "--hex", "-"], capsys)
    assert code == 0
    assert result["meter"] == "123"
    assert result["readings"] == [{"obis": "1-0:1.8.0", "ts": "2026-11-26T10:10:10Z", "value": 100500.0, "unit": "Wh"}]
    kinds = [f["kind"] for f in result["frames"]]
    assert kinds == ["sign_on", "identification", "option_select", "readout"]
    assert result["frames"][3]["bcc_ok"] is True


def test_iec_bad_bcc(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    block = build_readout(["C.1.0(1)", "1.8.0(1*kWh)"])
    path = tmp_path / "readout.bin"
    path.write_bytes(block[:-1] + bytes([block[-1] ^ 0x40]))
    code, result, _ = _run(["iec62056-21", str(path)], capsys)
    assert code == 1
    assert [i["code"] for i in result["issues"]] == ["bad_bcc"]


def test_iec_plain_lines() -> None:
    result = decode_bytes("iec62056-21", b"C.1.0(7)\r\n2.8.0(3.5*kWh)\r\n!\r\n")
    assert result["readings"][0]["value"] == 3500.0 and result["issues"] == []


@pytest.mark.parametrize(("kind", "fn"), [("hdlc", "describe_hdlc"), ("dlms-apdu", "describe_apdu")])
def test_dlms_kinds_use_the_dlms_package_or_say_not_built(
    kind: str, fn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "frame.hex"
    path.write_text("7e a0 07 03 21 93 0f 01 7e")
    code = main(["decode", kind, str(path), "--hex"])
    out, err = capsys.readouterr()
    try:
        built = hasattr(importlib.import_module("protocols.dlms"), fn)
    except ImportError:
        built = False
    if built:
        assert code in (0, 1) and "frames" in json.loads(out)
    else:
        assert code == 2 and "not built yet" in err


def test_modbus_map(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("protocols.modbus.maps")
    path = tmp_path / "mymeter.csv"
    path.write_text(
        "# word_order=big max_registers=80\n"
        "name,address,function_code,type,count,unit\n"
        "voltage,0,4,float32,2,V\n"
        "current,6,4,float32,2,A\n"
    )
    code, result, _ = _run(["modbus-map", str(path)], capsys)
    assert code == 0 and result["map"] == "mymeter"
    assert [r["name"] for r in result["registers"]] == ["voltage", "current"]
    assert len(result["frames"]) == 1  # coalesced into one request


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", "p1", str(tmp_path / "missing.txt")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["decode", "p1", "a", "b"]) == 2
    path = tmp_path / "x.hex"
    path.write_text("zz")
    assert main(["decode", "p1", "--hex", str(path)]) == 2
    assert "not hex" in capsys.readouterr().err


def test_modbus_map_bad_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("protocols.modbus.maps")
    path = tmp_path / "bad.csv"
    path.write_text("name,address,function_code,type,count\nvoltage,notanumber,4,float32,2\n")
    code, result, _ = _run(["modbus-map", str(path)], capsys)
    assert code == 1
    assert [i["code"] for i in result["issues"]] == ["bad_map"]
