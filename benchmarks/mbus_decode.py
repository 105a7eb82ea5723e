"""M-Bus decode speed: RSP_UD telegrams per second from a gateway's byte stream to records and readings, vs a plain
baseline measured in the same run.

The input is the real wired telegrams of tests/data/mbus/libmbus (76 frames of heat, water, gas and electricity
meters, 20-250 bytes each) repeated to N frames (``--quick``: 2,000; else 20,000), fed in 64-byte chunks as a TCP
gateway delivers them. Both passes must find every frame:

- amiflow: :class:`protocols.mbus.MbusStreamDecoder` (framing, checksum), :func:`protocols.mbus.parse_application`
  (header, every record: DIF/DIFE, VIF/VIFE tables, data codings, values in base units) and
  :func:`protocols.mbus.mbus_readings` (the ReadingBatch);
- baseline: the least any reader must do, in the same process: find each ``68 L L 68`` frame, check the stop byte
  and the checksum (the same ``sum`` as amiflow's), no records, no values.

``vs_baseline`` is amiflow's rate divided by the baseline's (below 1: the full decode costs that share more).
Run ``.venv/bin/python -m benchmarks.mbus_decode [--quick]``; the last line is
``RESULT mbus_decode frames_per_s=N vs_baseline=R``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script by `make bench`

from benchmarks._decode_bench import decode_main
from protocols.mbus import LongFrame, MbusStreamDecoder, mbus_readings, parse_application

DATA = Path(__file__).parents[1] / "tests" / "data" / "mbus" / "libmbus"
_CHUNK = 64


def make_stream(n: int) -> bytes:
    frames = [bytes.fromhex("".join(p.read_text().split())) for p in sorted(DATA.glob("*.hex"))]
    return b"".join(frames[i % len(frames)] for i in range(n))


def amiflow(stream: bytes) -> tuple[int, int]:
    dec = MbusStreamDecoder()
    frames = rows = 0
    for i in range(0, len(stream), _CHUNK):
        dec.receive_data(stream[i : i + _CHUNK])
        while (event := dec.next_event()) is not None:
            if isinstance(event, LongFrame):
                telegram = parse_application(event.ci, event.data)
                rows += len(mbus_readings(telegram.header, telegram.records, received_ts=1_790_000_000).batch)
                frames += 1
    return frames, rows


def baseline(stream: bytes) -> tuple[int, int]:
    buf = bytearray()
    frames = 0
    for i in range(0, len(stream), _CHUNK):
        buf += stream[i : i + _CHUNK]
        while len(buf) >= 4:
            if buf[0] != 0x68 or buf[1] != buf[2] or buf[3] != 0x68:
                del buf[:1]
                continue
            size = buf[1] + 6
            if len(buf) < size:
                break
            if buf[size - 1] == 0x16 and sum(buf[4 : size - 2]) & 0xFF == buf[size - 2]:
                frames += 1
            del buf[:size]
    return frames, 0


def main(argv: list[str] | None = None) -> int:
    return decode_main(argv, doc=__doc__, key="mbus_decode", label="M-Bus telegrams",
                       make_stream=make_stream, amiflow=amiflow, baseline=baseline)  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
