"""The independent SML peer: smllib (GPL-3.0) decodes what amiflow decodes, in a CHILD PROCESS only.

Never imported by amiflow or by a test (``test_sml_peer.py`` runs ``python smllib_peer.py``). Reads one hex string
per line on stdin (a framed SML file, or bare message bytes) and prints one JSON line per input::

    {"values": [{"obis": "0100010800ff", "unit": 30, "scaler": -1, "value": 123}, ...]}
    {"error": "CrcError ..."}

Framed input is read with smllib's X-25 reader, then its KERMIT one (the Holley variant).
"""

import json
import sys
from typing import Any

from smllib.reader import SmlStreamReader
from smllib.sml_frame import SmlFrame


def values(frame: SmlFrame) -> list[dict[str, Any]]:
    out = []
    for msg in frame.parse_frame():
        for e in getattr(msg.message_body, "val_list", None) or ():
            v = e.value
            out.append(
                {
                    "obis": str(e.obis),
                    "unit": e.unit,
                    "scaler": e.scaler,
                    "value": v if isinstance(v, (int, str)) or v is None else repr(v),
                }
            )
    return out


def decode(raw: bytes) -> list[dict[str, Any]]:
    if not raw.startswith(b"\x1b\x1b\x1b\x1b\x01\x01\x01\x01"):
        return values(SmlFrame(raw))
    error: Exception = ValueError("no CRC variant tried")
    for crc in ("x25", "kermit"):
        reader = SmlStreamReader(crc=crc)
        reader.add(raw)
        try:
            frame = reader.get_frame()
        except Exception as exc:  # report any peer failure as data
            error = exc
            continue
        if frame is None:
            raise ValueError("smllib found no complete frame")
        return values(frame)
    raise error


for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    try:
        print(json.dumps({"values": decode(bytes.fromhex(line))}))
    except Exception as exc:  # any peer failure is an answer
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
    sys.stdout.flush()
