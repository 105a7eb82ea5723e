"""The document decoders under fuzz: MQTT payloads (every ingested topic kind), the payments API body, tariff files
(amiflow JSON/TOML) and OpenEI URDB JSON, and the meter registry CSV, each a :class:`~tests.fuzz.codec_targets.Target`
as in :mod:`tests.fuzz.codec_targets`.

JSON inputs are mutated mostly structurally (:func:`tests.fuzz.mutators.mutate_json`) so the checks behind the
parser are reached. What may come out of each check: amiflow's own errors; for the payments body the API's answer to
a bad body, an HTTP 422 (``fastapi.HTTPException``), which the endpoint returns before it touches the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import HTTPException

from amiflow.db.registry import import_meters_csv
from amiflow.errors import AmiflowError, ConfigError
from amiflow.settings import Settings
from billing_bridge.api import _parse
from billing_bridge.payments import BalanceIn, PaymentIn, billing_window, validation_context
from ingest.testing import readings_payload
from protocols.mqtt_payloads import decode, decode_reading_rows
from rating.compile import compile_tariff
from rating.tariff_files import load_tariff
from tests.fuzz.codec_targets import DATA, Target
from tests.fuzz.mutators import mutate_json

__all__ = ["DOCUMENT_TARGETS"]

ROOT = Path(__file__).resolve().parents[2]
_NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


# -- MQTT payloads: the topic kind is the input's first byte, the payload the rest -------------------------------------
_TOPICS = ("ami/v1/M1/readings", "ami/v1/M1/events", "ami/v1/M1/status", "ami/v1/M1/cmd/result", "ami/v1/M1/p1",
           "tele/M1/SENSOR", "ami/v1/M1/other")  # fmt: skip


def _mqtt_seeds() -> list[bytes]:
    start = int(_NOW.timestamp()) - 86400
    readings = readings_payload("M1", start, 4, seq=3)
    registers = readings_payload("M1", start, 2, obis="1-0:1.8.0", unit="Wh", value=123456.5)
    events = {"meter": "M1", "events": [{"ts": "2026-11-19T00:00:00Z", "code": "power_down", "detail": {"s": 3}}]}
    status = {"state": "online", "ts": "2026-11-19T00:00:00Z"}
    result = {"id": "5f0c6a0e-1b7e-4a43-9c1e-0a4d7f0e9a11", "status": "ok", "relay": "connected"}
    tasmota = {"Time": "2026-11-19T00:00:00", "ENERGY": {"Total": 12.5, "Power": 230, "Voltage": 231, "Current": 1.1}}
    p1 = (DATA / "p1" / "dsmr_tools_v50_iskra_am550.txt").read_bytes()
    docs = [readings, registers, *(json.dumps(d).encode() for d in (events, status, result, tasmota))]
    return [bytes((k,)) + d for k, d in zip((0, 0, 1, 2, 3, 5, 4), [*docs, p1], strict=True)]


def _mqtt_check(data: bytes) -> None:
    topic = _TOPICS[data[0] % len(_TOPICS)] if data else _TOPICS[0]
    decode(topic, data[1:], received_ts=int(_NOW.timestamp()))
    decode_reading_rows(data[1:], topic_meter="M1")


def _mqtt_mutate(rng: Any, data: bytes, pool: Any, tokens: Any) -> bytes:
    kind = data[:1] if rng.random() < 0.9 else bytes((rng.randrange(256),))
    return kind + mutate_json(rng, data[1:], [p[1:] for p in pool], tokens)


# -- the payments API body (POST /payments, POST /balances) ------------------------------------------------------------
class _Body:
    def __init__(self, body: bytes) -> None:
        self._body = body

    async def body(self) -> bytes:
        return self._body


@cache
def _payment_context() -> dict[str, Any]:
    return validation_context(billing_window(Settings.model_construct()), _NOW)


def _payment_seeds() -> list[bytes]:
    paid = (_NOW - timedelta(days=2)).isoformat()
    payment = {"payment_id": "P-1", "account": "A-1", "amount": "123.45", "currency": "EUR", "paid_at": paid}
    balance = {"account": "A-1", "balance": "-10.00", "currency": "EUR", "as_of": paid, "due_date": "2026-12-01"}
    return [b"\x00" + json.dumps(payment).encode(), b"\x01" + json.dumps(balance).encode()]


@cache
def _loop() -> asyncio.AbstractEventLoop:
    return asyncio.new_event_loop()


def _payment_check(data: bytes) -> None:
    model = BalanceIn if data[:1] == b"\x01" else PaymentIn
    try:
        _loop().run_until_complete(_parse(_Body(data[1:]), model, _payment_context()))  # type: ignore[arg-type]
    except HTTPException as exc:
        assert exc.status_code == 422, exc  # the API's answer to a bad body; anything else is a defect


# -- tariff files: amiflow's JSON and TOML, and OpenEI URDB JSON ---------------------------------------------------
@cache
def _tmp() -> Path:
    shm = Path("/dev/shm")  # a file per input: in memory where the machine has it
    return Path(tempfile.mkdtemp(prefix="amiflow-fuzz-", dir=shm if shm.is_dir() else None))


def _tariff_seeds() -> list[bytes]:
    out = []
    for path in sorted((ROOT / "rating" / "tariffs").iterdir()):
        data = tomllib.loads(path.read_text()) if path.suffix == ".toml" else json.loads(path.read_text())
        out.append(json.dumps(data, default=str).encode())
        if path.suffix == ".toml":
            out.append(path.read_bytes())
    return out


def _urdb_seeds() -> list[bytes]:
    return [json.dumps(json.loads(p.read_text())).encode() for p in sorted((DATA / "urdb").glob("*.json"))]


def _tariff_check(data: bytes) -> None:
    """The input as a .json and as a .toml file (the suffix picks the parser): loaded, then every version compiled."""
    for suffix in (".json", ".toml"):
        path = _tmp() / f"tariff{suffix}"
        path.write_bytes(data)
        with contextlib.suppress(AmiflowError):
            for spec in load_tariff(path):
                compile_tariff(spec)


# -- the meter registry CSV (``amiflow meters import``): every row is checked before the first database write --------
class _Checked(Exception):
    """Every row passed: the import reached its transaction."""


class _NoDatabase:
    @contextmanager
    def transaction(self) -> Iterator[None]:
        raise _Checked
        yield


_CSV = (
    "meter,protocol,uri,timezone,tariff,account,serial,ct_ratio,vt_ratio,status,region,collector\n"
    "M1,mqtt,,Europe/Berlin,T1,A1,S1,1,1,active,north,c1\n"
    "M2,modbus,modbus+tcp://10.0.0.5:502?unit=1&map=sdm630,UTC,T1,A1,,200,1,active,north,c1\n"
    "M3,dlms,dlms+tcp://10.0.0.6:4059?client=16&server=1,America/New_York,,A2,,,,unverified,,\n"
    "M4,iec62056-21,iec62056-21:///dev/ttyUSB0,UTC,T2,,,,,inactive,,\n"
    "M5,sml,sml+tcp://10.0.0.7:7259,UTC,T2,A3,,,,active,south,\n"
)


def _registry_check(data: bytes) -> None:
    try:
        text = data.decode("utf-8")  # what the CLI's reading of the file does; not UTF-8 is a ConfigError there
    except UnicodeDecodeError as exc:
        raise ConfigError(str(exc)) from None
    with contextlib.suppress(_Checked):
        import_meters_csv(_NoDatabase(), text, source="fuzz.csv")  # type: ignore[arg-type]


DOCUMENT_TARGETS: tuple[Target, ...] = (
    Target("mqtt", _mqtt_seeds, _mqtt_check, mutator=_mqtt_mutate),
    Target("payments", _payment_seeds, _payment_check, mutator=_mqtt_mutate),
    Target("tariff", _tariff_seeds, _tariff_check, mutator=mutate_json),
    Target("urdb", _urdb_seeds, _tariff_check, mutator=mutate_json),
    Target("registry-csv", lambda: [_CSV.encode()], _registry_check, (b",", b"\n", b'"', b"\r\n", b"://", b"?", b"=")),
)
