"""SML decode speed: framed SML files per second from an optical-head byte stream to readings, vs a plain baseline.

The input is a realistic capture: the real files of tests/data/sml/ (EMH, ISKRA MT631, Itron, Holley with its
30-entry list, eBZ, DZG, DNT) repeated to N files (``--quick``: 2,000; else 20,000), with a little line noise
between some of them, fed in 64-byte chunks as a serial line delivers them. Both passes must find every file:

- amiflow: :class:`protocols.sml.SmlStreamDecoder` (framing, escapes, CRC), :func:`protocols.sml.parse_messages`
  and :func:`protocols.sml.sml_readings` (TLV, message CRCs, scaled readings in base units, nameplate meter id);
- baseline: the least any reader must do, in the same process: find each start and end escape sequence and
  check the transport CRC-16/X-25 (same table-driven CRC), no TLV, no values.

``vs_baseline`` is amiflow's rate divided by the baseline's (below 1: the full decode costs that share more).
Run ``.venv/bin/python -m benchmarks.sml_decode [--quick]``; the last line is
``RESULT sml_decode frames_per_s=N vs_baseline=R``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script by `make bench`

from benchmarks._decode_bench import decode_main
from protocols.sml import SmlFrame, SmlStreamDecoder, crc16_x25, from_hex, parse_messages, sml_readings

DATA = Path(__file__).parents[1] / "tests" / "data" / "sml"
_START = b"\x1b\x1b\x1b\x1b\x01\x01\x01\x01"
_END = b"\x1b\x1b\x1b\x1b\x1a"
_CHUNK = 64


def corpus_files() -> list[bytes]:
    """Every good x25-framed file of the corpus, as sent."""
    out: list[bytes] = []
    for path in sorted(DATA.iterdir()):
        if path.suffix not in (".hex", ".bin"):
            continue
        data = path.read_bytes()
        dec = SmlStreamDecoder()
        dec.receive_data(from_hex(data) or data)
        dec.receive_data(b"")
        out += [e.raw for e in iter(dec.next_event, None) if isinstance(e, SmlFrame) and e.crc_variant == "x25"]
    return out


def make_stream(n: int) -> bytes:
    files = corpus_files()
    parts = []
    for i in range(n):
        parts.append(files[i % len(files)])
        if i % 50 == 49:
            parts.append(b"\x00\xff\x55noise\x1b\x1b")
    return b"".join(parts)


def amiflow(stream: bytes) -> tuple[int, int]:
    dec = SmlStreamDecoder()
    frames = rows = 0
    for i in range(0, len(stream), _CHUNK):
        dec.receive_data(stream[i : i + _CHUNK])
        while (event := dec.next_event()) is not None:
            if isinstance(event, SmlFrame):
                messages, _ = parse_messages(event.body, trusted=True)
                rows += len(sml_readings(messages, received_ts=1_790_000_000).batch)
                frames += 1
    return frames, rows


def baseline(stream: bytes) -> tuple[int, int]:
    buf = bytearray()
    frames = 0
    for i in range(0, len(stream), _CHUNK):
        buf += stream[i : i + _CHUNK]
        while (start := buf.find(_START)) >= 0:
            end = buf.find(_END, start + 8)
            while end >= 0 and (end - start) % 4:
                end = buf.find(_END, end + 1)
            if end < 0 or len(buf) < end + 8:
                del buf[:start]
                break
            if crc16_x25(memoryview(buf)[start : end + 6]).to_bytes(2, "little") == buf[end + 6 : end + 8]:
                frames += 1
            del buf[: end + 8]
    return frames, 0


def main(argv: list[str] | None = None) -> int:
    return decode_main(argv, doc=__doc__, key="sml_decode", label="SML files",
                       make_stream=make_stream, amiflow=amiflow, baseline=baseline)  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
