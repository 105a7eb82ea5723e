"""The M-Bus test corpus (tests/data/mbus, see SOURCES.md): frames, their keys, and libmbus's own decode.

The tests get this module as the ``corpus`` fixture (under pytest's importlib mode a test cannot import a sibling).
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from protocols.mbus import KeyRing

DATA = Path(__file__).resolve().parents[3] / "data" / "mbus"
_LIBMBUS_UNITS = {"l": 1e-3, "kWh": 1e3, "MWh": 1e6, "kJ": 1e3, "MJ": 1e6, "GJ": 1e9, "kW": 1e3, "MW": 1e6}
_LIBMBUS_FUNCTIONS = {
    "Instantaneous value": "instantaneous",
    "Actual value": "instantaneous",
    "Maximum value": "maximum",
    "Minimum value": "minimum",
    "Value during error state": "error",
}


def frames() -> list[tuple[str, str]]:
    """(name, frame hex) of every capture, libmbus, pyMeterBus and wireless ones."""
    out = []
    for folder in ("libmbus", "pymeterbus", "wmbus"):
        for path in sorted((DATA / folder).glob("*.hex")):
            out.append((f"{folder}/{path.name}", "".join(path.read_text().split())))
    return out


def peer_hex(name: str, frame_hex: str) -> str:
    """The frame as the peers get it: a wireless frame cut to its L field (jmbus captures carry a stray byte)."""
    raw = bytes.fromhex(frame_hex)
    if name.startswith("wmbus/") and len(raw) > raw[0] + 1:
        raw = raw[: raw[0] + 1]
    return raw.hex()


def keys(name: str) -> KeyRing:
    table = json.loads((DATA / "wmbus" / "keys.json").read_text())
    return KeyRing(table.get(name.rsplit("/", 1)[-1], {}))


def key_hex(name: str) -> str | None:
    table = json.loads((DATA / "wmbus" / "keys.json").read_text())
    found = table.get(name.rsplit("/", 1)[-1], {})
    return next(iter(found.values()), None)


def libmbus_records(name: str) -> list[dict[str, Any]] | None:
    """libmbus's normalised decode (``*.norm.xml`` beside a libmbus frame) in the peers' record shape."""
    path = DATA / (name.removesuffix(".hex") + ".norm.xml")
    if not path.exists():
        return None
    root = ET.fromstring(path.read_bytes())
    out = []
    for rec in root.iter("DataRecord"):
        function = rec.findtext("Function") or ""
        if function not in _LIBMBUS_FUNCTIONS:
            continue  # "More records follow", "Manufacturer specific": not data records
        text = (rec.findtext("Value") or "").strip()
        try:
            value: Any = float(text) * _LIBMBUS_UNITS.get(rec.findtext("Unit") or "", 1)
        except ValueError:
            value = text
        out.append(
            {
                "f": _LIBMBUS_FUNCTIONS[function],
                "s": int(rec.findtext("StorageNumber") or 0),
                "t": int(rec.findtext("Tariff") or 0),
                "u": int(rec.findtext("Device") or 0),
                "v": value,
                "h": None,
            }
        )
    return out


@pytest.fixture(scope="session")
def corpus() -> ModuleType:
    return sys.modules[__name__]
