"""``amiflow decode sml``: the readings payload shape of ``decode p1`` for SML captures (several files, bare messages,
hex text with comments, stdin), informational issues exit 0, a broken frame prints its issue and exits 1."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from amiflow_app.cli import main
from protocols.decode import decode_bytes
from simulators.sml_profiles import SmlMeter

DATA = Path(__file__).resolve().parents[2] / "data" / "sml"
TS = 1_790_000_000


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = main(["decode", *argv])
    out, _ = capsys.readouterr()
    return code, json.loads(out)


def test_a_capture_of_several_files_with_noise(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    meter = SmlMeter("itron", meter_index=4)
    path = tmp_path / "capture.bin"
    path.write_bytes(b"\x00\x11 noise" + meter.file(TS) + meter.file(TS + 2))
    code, result = _run(["sml", str(path)], capsys)
    assert code == 0 and result["issues"] == []
    assert result["meter"] == "1 ITR00 10000004" and result["skipped_bytes"] == len(b"\x00\x11 noise")
    assert [(f["kind"], f["crc"], f["clock"]) for f in result["frames"]] == [("sml", "x25", "received")] * 2
    assert result["frames"][0]["messages"] == ["PublicOpen.Res", "GetList.Res", "PublicClose.Res"]
    imp, _ = meter.registers_wh(TS)
    first = result["readings"][0]
    assert set(first) == {"obis", "ts", "value", "unit"}
    assert {"obis": "1-0:1.8.0", "value": float(imp), "unit": "Wh"}.items() <= first.items()
    assert first["ts"].endswith("Z")


def test_a_broken_frame_prints_its_issue_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = bytearray(SmlMeter("ehz").file(TS))
    data[60] ^= 0x01
    path = tmp_path / "bad.bin"
    path.write_bytes(bytes(data))
    code, result = _run(["sml", str(path)], capsys)
    assert code == 1
    assert [i["code"] for i in result["issues"]] == ["bad_crc"] and result["readings"] == []


def test_hex_with_comments_from_stdin_and_informational_issues(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (DATA / "handmade_attention_requests.hex").read_bytes()
    assert b"#" in text  # an annotated vector: the SML hex reader skips comments
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text)))
    code, result = _run(["sml", "-", "--hex"], capsys)
    assert code == 0
    assert {i["code"]: i.get("severity") for i in result["issues"]} == {"unknown_message": "info"}


def test_bare_messages_and_a_file_that_is_no_sml() -> None:
    body = (DATA / "landisgyr_sml2mqtt_body.hex").read_bytes()
    result = decode_bytes("sml", body)
    assert result["frames"][0]["kind"] == "sml-messages" and result["meter"] == "1 LGZ00 54541129"
    values = {r["obis"]: r["value"] for r in result["readings"]}
    assert values["1-0:1.8.0"] == pytest.approx(5171923.7) and values["1-0:16.7.0"] == 251.0
    assert [i["code"] for i in decode_bytes("sml", b"hello")["issues"]] == ["no_sml"]
