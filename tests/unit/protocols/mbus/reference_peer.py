"""Independent reference decoders for the M-Bus corpus, each run by the tests as a child process.

``python reference_peer.py pymeterbus HEX...`` uses pyMeterBus (BSD-3-Clause), ``python reference_peer.py mbusparser
HEX[@KEY]...`` uses pymbusparser, the bindings of the Rust m-bus-parser (MIT; it reads wireless frames and mode 5
too). Both are in the test extra; nothing in amiflow imports them. One JSON line per frame:
``{"records": [{"f": function, "s": storage, "t": tariff, "u": subunit, "v": value, "h": DIB+VIB hex or null}]}``
with functions named as amiflow names them (instantaneous, maximum, minimum, error), numbers in base units
(durations in seconds), dates and texts as strings; or ``{"error": "..."}`` when the peer cannot decode the frame.
"""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from typing import Any

_FUNCTIONS = {
    "FunctionType.INSTANTANEOUS_VALUE": "instantaneous",
    "FunctionType.MAXIMUM_VALUE": "maximum",
    "FunctionType.MINIMUM_VALUE": "minimum",
    "FunctionType.ERROR_STATE_VALUE": "error",
    "Instantaneous value": "instantaneous",
    "Maximum value": "maximum",
    "Minimum value": "minimum",
    "Value during error state": "error",
}
_SECONDS = {"s": 1, "min": 60, "h": 3600, "d": 86400}


def _number(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return float(value)
    return str(value)


def _pymeterbus(frame_hex: str) -> dict[str, Any]:
    import meterbus  # type: ignore[import-untyped]

    telegram = meterbus.load(bytes.fromhex(frame_hex))
    out = []
    for record in telegram.body.bodyPayload.records:
        item = record.interpreted
        if item["function"] == "FunctionType.SPECIAL_FUNCTION":
            continue
        out.append(
            {
                "f": _FUNCTIONS.get(str(item["function"]), str(item["function"])),
                "s": int(item["storage_number"] or 0),
                "t": int(item.get("tariff") or 0),
                "u": int(item.get("device") or 0),
                "v": _number(item["value"]),
                "h": None,
            }
        )
    return {"records": out}


def _mbusparser(arg: str) -> dict[str, Any]:
    import pymbusparser

    frame_hex, _, key = arg.partition("@")
    result = pymbusparser.parse(frame_hex, key=key or None)
    out = []
    for record in result.get("records", []):
        value = record.get("value") or {}
        raw = value.get("value")
        number: Any = raw
        if value.get("kind") in ("decimal", "float") and raw is not None:
            number = float(raw) * _SECONDS.get(record.get("unit") or "", 1)
        out.append(
            {
                "f": _FUNCTIONS.get(record.get("function", ""), record.get("function")),
                "s": int(record.get("storage_number") or 0),
                "t": int(record.get("tariff") or 0),
                "u": int(record.get("subunit") or 0),
                "v": number,
                "h": (record.get("header_hex") or "").replace(" ", "").lower() or None,
            }
        )
    return {"records": out, "state": result.get("decode_state")}


def main(argv: list[str]) -> int:
    peer = {"pymeterbus": _pymeterbus, "mbusparser": _mbusparser}[argv[0]]
    for arg in argv[1:]:
        try:
            print(json.dumps(peer(arg)))
        except Exception as exc:  # a peer's failure is data for the comparison, not a crash of the run
            print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
