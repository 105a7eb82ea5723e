"""The reference decoder for the P1 crosscheck: dsmr_parser (MIT), run as a child process by test_p1_crosscheck.

Reads JSON [{"text": telegram (latin-1 text), "spec": a dsmr_parser telegram_specifications name}] on stdin and
writes, for each telegram, the checksum verdict of ``TelegramParser.parse`` and every object dsmr_parser's
specification finds, each with its line address and its values (Decimal as text, datetimes as epoch seconds).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime
from decimal import Decimal
from typing import Any

from dsmr_parser import telegram_specifications
from dsmr_parser.exceptions import InvalidChecksumError, ParseError
from dsmr_parser.objects import CosemObject, MBusObject, MBusObjectPeak, ProfileGenericObject
from dsmr_parser.parsers import TelegramParser

logging.disable(logging.CRITICAL)  # dsmr_parser logs every line it cannot parse


def _enc(value: Any) -> Any:
    if isinstance(value, Decimal):
        return {"decimal": str(value)}
    if isinstance(value, datetime):
        return {"ts": int(value.timestamp())}
    return value


def _object(obj: Any) -> dict[str, Any]:
    if isinstance(obj, list):  # the maximum demand history
        return {"type": "peaks", "peaks": [_object(p) for p in obj]}
    if isinstance(obj, MBusObjectPeak):
        return {"type": "peak", "month": _enc(obj.datetime), "at": _enc(obj.occurred), "value": _enc(obj.value)}
    if isinstance(obj, ProfileGenericObject):
        buffer = [{"ts": _enc(b.datetime), "value": _enc(b.value), "unit": b.unit} for b in obj.buffer]
        return {"type": "log", "count": obj.buffer_length, "buffer": buffer}
    if isinstance(obj, MBusObject):
        return {"type": "mbus", "ts": _enc(obj.datetime), "value": _enc(obj.value), "unit": obj.unit}
    if isinstance(obj, CosemObject):
        return {"type": "cosem", "value": _enc(obj.value), "unit": obj.unit}
    return {"type": type(obj).__name__}


def _decode(text: str, spec_name: str) -> dict[str, Any]:
    spec = getattr(telegram_specifications, spec_name)
    if spec.get("general_global_cipher") and text.startswith("/"):  # the plain telegram inside the DLMS cipher
        spec = {**spec, "general_global_cipher": False}
    verdict = "ok"
    try:
        TelegramParser(spec).parse(text)
    except InvalidChecksumError:
        verdict = "bad_crc"
    except ParseError:
        verdict = "parse_error"
    objects = []
    for item in spec["objects"]:
        for match in re.findall(item["obis_reference"], text, re.DOTALL | re.MULTILINE):
            try:
                parsed = item["value_parser"].parse(match)
            except (ParseError, ValueError, IndexError, TypeError):
                continue
            address = match.split("(", 1)[0]
            objects.append({"address": address, "name": item["value_name"], **_object(parsed)})
    return {"checksum": verdict, "objects": objects}


def _codes() -> list[str]:
    """Every OBIS code (A-B as a pattern, C.D.E) dsmr_parser's obis_references names."""
    from dsmr_parser import obis_references

    found = set()
    for value in vars(obis_references).values():
        for pattern in value if isinstance(value, tuple) else (value,):
            m = re.match(r"\^(.+?):(\d+)\\\.(\d+)\\\.(\[?[\d]+\]?)", pattern) if isinstance(pattern, str) else None
            if m:
                found.add(f"{m[1]}:{m[2]}.{m[3]}.{m[4]}")
    return sorted(found)


def main() -> None:
    if sys.argv[1:] == ["--codes"]:
        json.dump(_codes(), sys.stdout)
        return
    json.dump([_decode(t["text"], t["spec"]) for t in json.load(sys.stdin)], sys.stdout)


if __name__ == "__main__":
    main()
