"""Per-meter M-Bus keys in the registry (migration 0016): set by ``meters add --key-file``, ``meters set-key`` and a
``key`` column of ``meters import``; stored in ``amiflow.meter_keys`` only; never printed by ``meters show/list``,
never in a log line or an error message (the commands run in-process at debug logging, output and logs searched
for the key's hex in every spelling)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import psycopg
import pytest

from amiflow.db.meter_keys import load_meter_keys
from amiflow_app.cli import main

KEY = bytes.fromhex("8e1d5c3a7b2f9e04d6c8a1b3e5f70912")
OTHER = bytes.fromhex("00112233445566778899aabbccddeeff")


def _spellings(key: bytes) -> list[str]:
    h = key.hex()
    return [h, h.upper(), key.hex(" "), key.hex(":"), h[:12], repr(key)[2:14]]


@pytest.fixture
def cli(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> Any:  # fmt: skip
    monkeypatch.setenv("AMIFLOW_DATABASE_URL", db_url)
    monkeypatch.setenv("AMIFLOW_DATA_DIR", str(tmp_path / "data"))
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []

    def run(*args: str, verbose: bool = True) -> tuple[int, str, str]:
        code = main(["-vv", *args] if verbose else list(args))  # -vv: debug logs and tracebacks searched too
        out, err = capsys.readouterr()
        seen.extend([out, err])
        return code, out, err

    run.seen = seen  # type: ignore[attr-defined]
    return run


def _no_key_anywhere(texts: list[str], caplog: pytest.LogCaptureFixture, *keys: bytes) -> None:
    logged = [r.getMessage() for r in caplog.records] + [str(r.args) for r in caplog.records]
    for key in keys:
        for spelling in _spellings(key):
            for text in [*texts, *logged]:
                assert spelling.lower() not in text.lower(), (spelling, text[:200])


def test_add_with_a_key_file_stores_it_apart_and_never_shows_it(
    cli: Any, db_conn: psycopg.Connection[Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key_file = tmp_path / "heat.key"
    key_file.write_text(KEY.hex(" ").upper() + "\n")
    code, out, _ = cli("meters", "add", "HEAT-1", "--protocol", "mbus", "--uri", "mbus+tcp://10.0.0.5:10001?address=5",
                       "--key-file", str(key_file))  # fmt: skip
    assert code == 0 and "with its AES key" in out
    raw = tmp_path / "water.key"
    raw.write_bytes(OTHER)  # the 16 raw bytes
    assert cli("meters", "add", "WATER-1", "--protocol", "wmbus", "--uri", "wmbus://12345678?manufacturer=kam",
               "--key-file", str(raw))[0] == 0  # fmt: skip
    assert {k: v.raw for k, v in load_meter_keys(db_conn).items()} == {"HEAT-1": KEY, "WATER-1": OTHER}
    code, shown, _ = cli("meters", "show", "HEAT-1")
    assert code == 0 and '"aes_key": "stored (never shown)"' in shown
    for args in (("meters", "list"), ("meters", "list", "--json"), ("meters", "show", "WATER-1")):
        assert cli(*args)[0] == 0
    assert "aes_key" not in db_conn.execute("SELECT to_jsonb(m) FROM amiflow.meters m LIMIT 1").fetchone()[0]
    _no_key_anywhere(cli.seen, caplog, KEY, OTHER)
    loaded = load_meter_keys(db_conn)
    _no_key_anywhere([repr(loaded), str(loaded["HEAT-1"]), f"{loaded['HEAT-1']}"], caplog, KEY, OTHER)


def test_set_key_replaces_and_removes(cli: Any, db_conn: psycopg.Connection[Any], tmp_path: Path,
                                      caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    db_conn.execute("INSERT INTO amiflow.meters (name, protocol, uri) VALUES ('G1', 'mbus', 'mbus+tcp://h:1')")
    key_file = tmp_path / "k"
    key_file.write_text("0x" + KEY.hex())
    assert cli("meters", "set-key", "G1", "--key-file", str(key_file))[:2] == (0, "meter G1: AES key stored\n")
    key_file.write_text(OTHER.hex())
    assert cli("meters", "set-key", "G1", "--key-file", str(key_file))[0] == 0
    assert load_meter_keys(db_conn)["G1"].raw == OTHER
    assert "AES key removed" in cli("meters", "set-key", "G1", "--remove")[1]
    assert load_meter_keys(db_conn) == {}
    code, _, err = cli("meters", "set-key", "NOPE", "--key-file", str(key_file))
    assert code != 0 and "meter NOPE: not registered" in err
    db_conn.execute("INSERT INTO amiflow.meter_keys SELECT id, %s FROM amiflow.meters WHERE name = 'G1'", (KEY,))
    db_conn.execute("DELETE FROM amiflow.meters WHERE name = 'G1'")  # the key goes with its meter
    assert db_conn.execute("SELECT count(*) FROM amiflow.meter_keys").fetchone() == (0,)
    _no_key_anywhere(cli.seen, caplog, KEY, OTHER)


def test_bad_key_files_are_one_line_errors_that_quote_no_key(cli: Any, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    cases = {
        "short": KEY.hex()[:-2],  # 30 digits of the real key
        "long": KEY.hex() + "ab",
        "nothex": KEY.hex()[:-1] + "g",
    }
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text)
        args = ("meters", "add", f"M-{name}", "--protocol", "mbus", "--uri", "mbus+tcp://h:1", "--key-file", str(path))
        assert cli(*args)[0] != 0  # with -vv: the traceback holds no key either
        code, _, err = cli(*args, verbose=False)
        lines = [line for line in err.splitlines() if line.startswith("amiflow meters add:")]
        assert code != 0 and len(lines) == 1 and "Traceback" not in err, err
        assert "32 hex digits" in lines[0] and str(path) in lines[0], lines[0]
    missing = cli("meters", "add", "M-x", "--protocol", "mbus", "--uri", "mbus+tcp://h:1", "--key-file", "/nonexistent")
    assert missing[0] != 0 and "key file /nonexistent: cannot read" in missing[2]
    assert "M-short" not in cli("meters", "list")[1]  # nothing registered by a failed add
    _no_key_anywhere(cli.seen, caplog, KEY)


def test_import_with_a_key_column(cli: Any, db_conn: psycopg.Connection[Any], tmp_path: Path,
                                  caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    header = "meter,protocol,uri,timezone,tariff,account,key\n"
    good = tmp_path / "good.csv"
    good.write_text(
        header + f"W-1,wmbus,wmbus://00000001,Europe/Berlin,,,{KEY.hex()}\n"
        "E-1,mqtt,,UTC,,,\n"
        f"H-1,mbus,mbus+tcp://h:1?address=3,UTC,,,{OTHER.hex(':')}\n"
    )
    assert cli("meters", "import", str(good))[0] == 0
    assert {k: v.raw for k, v in load_meter_keys(db_conn).items()} == {"W-1": KEY, "H-1": OTHER}
    bad = tmp_path / "bad.csv"
    bad.write_text(header + f"W-2,wmbus,wmbus://00000002,UTC,,,{OTHER.hex()}\nW-3,wmbus,wmbus://00000003,UTC,,,"
                   f"{KEY.hex()[:20]}\n")  # fmt: skip
    code, _, err = cli("meters", "import", str(bad))
    assert code != 0 and "line 3: meter W-3: an AES-128 key is 32 hex digits; found 20 characters" in err, err
    stored = db_conn.execute("SELECT count(*) FROM amiflow.meters WHERE name IN ('W-2', 'W-3')").fetchone()
    assert stored == (0,)  # the import is one transaction
    _no_key_anywhere(cli.seen, caplog, KEY, OTHER)
