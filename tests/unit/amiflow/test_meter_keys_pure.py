"""Key files and key text (amiflow.db.meter_keys), the ``wmbus://`` meter URI, and KeyRing's default key: errors
say how much was found, never what; reprs hide the bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from amiflow.db.meter_keys import MeterKey, parse_key, read_key_file
from amiflow.errors import ConfigError
from amiflow.uri import parse_meter_uri
from protocols.mbus import DeviceHeader, KeyRing

KEY = bytes.fromhex("a1b2c3d4e5f60718293a4b5c6d7e8f90")


@pytest.mark.parametrize("text", [KEY.hex(), KEY.hex().upper(), KEY.hex(" "), KEY.hex(":"), "0x" + KEY.hex(),
                                  KEY.hex("-") + "\n"])  # fmt: skip
def test_key_spellings(text: str) -> None:
    assert parse_key(text, where="t").raw == KEY


@pytest.mark.parametrize("text", [KEY.hex()[:-1], KEY.hex() + "0", KEY.hex()[:-1] + "x", ""])
def test_bad_keys_name_the_input_not_the_key(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_key(text, where="meters.csv line 4")
    assert str(err.value).startswith("meters.csv line 4: an AES-128 key is 32 hex digits; found")
    assert KEY.hex()[:8] not in str(err.value)


def test_key_files(tmp_path: Path) -> None:
    (tmp_path / "hex").write_text(KEY.hex() + "\n")
    (tmp_path / "raw").write_bytes(KEY)
    (tmp_path / "bin").write_bytes(b"\xff" * 20)
    assert read_key_file(tmp_path / "hex") == read_key_file(tmp_path / "raw") == MeterKey(KEY)
    with pytest.raises(ConfigError, match="found 20 bytes"):
        read_key_file(tmp_path / "bin")
    with pytest.raises(ConfigError, match="is 16 bytes, not 3"):
        MeterKey(b"abc")


def test_reprs_hide_keys() -> None:
    key = MeterKey(KEY)
    for text in (
        repr(key),
        str(key),
        f"{key}",
        repr({"M": key}),
        repr(KeyRing(default=KEY)),
        repr(KeyRing({"1": KEY})),
    ):
        assert KEY.hex() not in text and KEY.hex()[:6] not in text.lower() and "\\xa1" not in text


def test_default_key_serves_any_ident_below_specific_ones() -> None:
    other = bytes(16)
    ring = KeyRing({"KAM:12345678": other}, default=KEY)
    assert ring.key_for(DeviceHeader("12345678", "KAM", 1, 4)) == other
    assert ring.key_for(DeviceHeader("99999999", "ABB", 1, 4)) == KEY
    assert KeyRing().key_for(DeviceHeader("99999999", "ABB", 1, 4)) is None
    assert "a default key" in repr(ring) and len(ring) == 2
    with pytest.raises(ConfigError, match="32 hex digits"):
        KeyRing(default="zz" * 16)


def test_wmbus_uri() -> None:
    uri = parse_meter_uri("wmbus://12345678?manufacturer=kam")
    assert (uri.protocol, uri.link, uri.host, uri.params) == ("wmbus", "radio", "12345678", {"manufacturer": "KAM"})
    assert parse_meter_uri("wmbus://00000001").params == {}
    for bad in ("wmbus://1234567", "wmbus://12345678/x", "wmbus://1234567٣", "wmbus://12345678?manufacturer=K1"):
        with pytest.raises(ConfigError, match="wmbus"):
            parse_meter_uri(bad)
