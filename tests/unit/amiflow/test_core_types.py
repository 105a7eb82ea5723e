"""Settings, meter URIs, OBIS codes, units, reading batches and the binary COPY codec: pure, no I/O."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from amiflow.db.binary_copy import decode_rows, encode_rows
from amiflow.errors import ConfigError, StorageError
from amiflow.settings import load_settings
from amiflow.types import ChannelKind, Obis, ReadingBatch, channel_kind, normalize_unit, parse_obis
from amiflow.uri import parse_meter_uri


def test_wrong_settings_are_one_line_errors_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMIFLOW_DATABASE_URL", "mysql://x/y")
    with pytest.raises(ConfigError, match=r"^AMIFLOW_DATABASE_URL: expected a PostgreSQL URL") as err:
        load_settings()
    assert "\n" not in str(err.value)
    monkeypatch.delenv("AMIFLOW_DATABASE_URL")
    monkeypatch.setenv("AMIFLOW_POLL_INTERVAL_S", "soon")
    with pytest.raises(ConfigError, match="AMIFLOW_POLL_INTERVAL_S"):
        load_settings()


def test_toml_file_is_weaker_than_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "amiflow.toml"
    cfg.write_text('mqtt_url = "mqtt://broker:1883"\npoll_interval_s = 60\n')
    monkeypatch.setenv("AMIFLOW_POLL_INTERVAL_S", "30")
    settings = load_settings(cfg)
    assert settings.mqtt_url == "mqtt://broker:1883" and settings.poll_interval_s == 30
    cfg.write_text("no_such_setting = 1\n")
    with pytest.raises(ConfigError, match="no_such_setting"):
        load_settings(cfg)
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("text", "protocol", "link", "where"),
    [
        ("modbus+tcp://127.0.0.1:5020?unit=3&map=sdm630", "modbus", "tcp", ("127.0.0.1", 5020)),
        ("modbus+rtu:///dev/ttyUSB0?baud=9600&unit=1", "modbus", "serial", "/dev/ttyUSB0"),
        ("dlms+tcp://meter.local?client=16&server=1", "dlms", "tcp", ("meter.local", 4059)),
        ("dlms+hdlc:///dev/pts/3", "dlms", "serial", "/dev/pts/3"),
        ("dlms+hdlc+tcp://127.0.0.1:4061", "dlms", "tcp", ("127.0.0.1", 4061)),
        ("iec62056-21:///dev/ttyS0", "iec62056-21", "serial", "/dev/ttyS0"),
        ("mqtt://M42", "mqtt", "mqtt", None),
    ],
)
def test_contract_uris_parse(text: str, protocol: str, link: str, where: object) -> None:
    uri = parse_meter_uri(text)
    assert (uri.protocol, uri.link) == (protocol, link)
    if link == "tcp":
        assert (uri.host, uri.port) == where
    elif link == "serial":
        assert uri.path == where
    else:
        assert uri.host == "M42"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("zigbee://x", "unknown scheme"),
        ("modbus+tcp://:502", "HOST:PORT"),
        ("modbus+tcp://h:99999", "port"),
        ("dlms+hdlc://dev/tty", "absolute device path"),
        ("mqtt://a/b", "METER_ID"),
    ],
)
def test_bad_uris_name_the_uri_and_the_problem(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        parse_meter_uri(text)
    assert repr(text) in str(err.value)


def test_uri_int_params() -> None:
    uri = parse_meter_uri("modbus+tcp://h:1?unit=0x10")
    assert uri.int_param("unit", 1) == 16 and uri.int_param("other", 7) == 7
    with pytest.raises(ConfigError, match="unit"):
        parse_meter_uri("modbus+tcp://h:1?unit=x").int_param("unit", 1)


def test_obis_forms_and_kinds() -> None:
    assert parse_obis("1-0:1.8.0") == Obis(1, 0, 1, 8, 0, 255)
    assert parse_obis("0-0:96.1.0*255") == Obis(0, 0, 96, 1, 0, 255)
    assert parse_obis("1.8.1") == Obis(1, 0, 1, 8, 1)
    assert str(parse_obis("1-0:32.7.0.255")) == "1-0:32.7.0"
    assert Obis.from_bytes(bytes([1, 0, 99, 1, 0, 255])) == Obis(1, 0, 99, 1, 0)
    assert channel_kind(parse_obis("1-0:1.29.0")) is ChannelKind.INTERVAL
    assert channel_kind(parse_obis("1-0:2.8.0")) is ChannelKind.REGISTER
    assert channel_kind(parse_obis("1-0:32.7.0")) is ChannelKind.INSTANTANEOUS
    for bad in ("", "1-0:1", "1-0:1.8.0.256", "x.y.z"):
        with pytest.raises(ValueError):
            parse_obis(bad)


def test_units_normalize_to_base_units() -> None:
    assert normalize_unit("kWh") == ("Wh", 1e3)
    assert normalize_unit("MWH") == ("Wh", 1e6)
    assert normalize_unit("kvarh") == ("varh", 1e3)
    with pytest.raises(ValueError, match="furlong"):
        normalize_unit("furlong")


def test_batch_columns_must_agree_and_take_concat_work() -> None:
    b = ReadingBatch.from_columns("M1", "1-0:1.29.0", [1, 2, 3], [1.0, 2.0, 3.0], unit="Wh")
    assert len(b) == 3 and list(b.meter) == ["M1"] * 3
    both = ReadingBatch.concat([b, b.take(np.array([True, False, True]))])
    assert len(both) == 5 and list(both.ts) == [1, 2, 3, 1, 3]
    with pytest.raises(ValueError, match="column meter has 0 rows"):
        ReadingBatch(ts=np.zeros(2, np.int64))


FIELDS = (("a", "i4"), ("b", "i2"), ("c", "i8"), ("d", "f8"))


@given(
    st.lists(
        st.tuples(
            st.integers(-(2**31), 2**31 - 1),
            st.integers(-(2**15), 2**15 - 1),
            st.integers(-(2**63), 2**63 - 1),
            st.floats(allow_nan=False),
        ),
        max_size=50,
    ),
    st.integers(1, 7),
)
def test_binary_copy_round_trip(rows: list[tuple[int, int, int, float]], chunk: int) -> None:
    cols = {name: np.array([r[i] for r in rows], dtype=kind) for i, (name, kind) in enumerate(FIELDS)}
    data = b"".join(encode_rows(FIELDS, cols, chunk_rows=chunk))
    back = decode_rows(data, FIELDS)
    for name, _ in FIELDS:
        assert np.array_equal(back[name], cols[name])


def test_binary_copy_rejects_nulls_and_garbage() -> None:
    cols = {name: np.zeros(1, dtype=kind) for name, kind in FIELDS}
    data = bytearray(b"".join(encode_rows(FIELDS, cols)))
    with pytest.raises(StorageError, match="signature"):
        decode_rows(b"junk" + bytes(data), FIELDS)
    data[19 + 2 : 19 + 6] = (-1).to_bytes(4, "big", signed=True)  # the first field's length -> NULL
    with pytest.raises(StorageError):
        decode_rows(bytes(data), FIELDS)
