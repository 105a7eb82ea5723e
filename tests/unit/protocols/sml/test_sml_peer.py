"""Cross-check with an independent SML decoder: smllib (GPL-3.0), only ever run in a child process
(``smllib_peer.py``), must see the same list entries (OBIS, unit, scaler, value) as amiflow in every frame of the
corpus and in randomly generated files from amiflow's encoder."""

from __future__ import annotations

import importlib.util
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from protocols.sml import (
    GetListRes,
    ListEntry,
    PublicCloseRes,
    PublicOpenRes,
    SmlFrame,
    SmlMessage,
    SmlStreamDecoder,
    SmlTime,
    Typed,
    encode_file,
    from_hex,
    parse_messages,
)

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("smllib") is None,
    reason="smllib (the independent SML peer) is not installed: pip install -e '.[test]'",
)

HERE = Path(__file__).parent
DATA = HERE.parents[2] / "data" / "sml"


def _peer(frames: list[bytes]) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, str(HERE / "smllib_peer.py")],
        input="\n".join(f.hex() for f in frames) + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(out) == len(frames), proc.stderr[-2000:]
    return out


def _ours(body: bytes) -> list[ListEntry]:
    messages, _ = parse_messages(body, trusted=True)  # smllib does not check message CRCs either
    return [e for m in messages if isinstance(m.body, GetListRes) for e in m.body.entries]


def _same(entry: ListEntry, peer: dict[str, Any]) -> bool:
    value = entry.value
    if entry.obj_name.hex() != peer["obis"] or entry.unit != peer["unit"] or entry.scaler != peer["scaler"]:
        return False
    if isinstance(value, bytes):  # smllib shows an octet string as hex, or as its printable characters
        printable = "".join(chr(b) for b in value if 32 <= b < 127)
        return peer["value"] in (value.hex(), printable) or (not value and peer["value"] is None)
    if isinstance(value, int) and not isinstance(value, bool):
        return bool(value == peer["value"])
    return True  # lists (a time as a value) and None: smllib renders them its own way


_SMLLIB_BODIES = {0x0101, 0x0201, 0x0701}  # smllib reads PublicOpen.Res, PublicClose.Res and GetList.Res only


def _compare(frames: list[tuple[bytes, bytes]]) -> int:
    answers = _peer([raw for raw, _ in frames])
    entries = 0
    for (raw, body), answer in zip(frames, answers, strict=True):
        if "UnsupportedChoiceValue" in answer.get("error", ""):
            tags = {m.tag for m in parse_messages(body, trusted=True)[0]}
            assert tags - _SMLLIB_BODIES, (answer, raw.hex())  # only a body smllib lacks excuses it
            continue
        assert "error" not in answer, (answer, raw.hex())
        ours = _ours(body)
        assert len(ours) == len(answer["values"]), raw.hex()
        for entry, peer in zip(ours, answer["values"], strict=True):
            assert _same(entry, peer), (entry, peer, raw.hex())
        entries += len(ours)
    return entries


def _corpus_frames() -> list[tuple[bytes, bytes]]:
    frames: list[tuple[bytes, bytes]] = []
    for path in sorted(DATA.iterdir()):
        if path.suffix not in (".hex", ".bin"):
            continue
        data = path.read_bytes()
        raw = from_hex(data) or data
        dec = SmlStreamDecoder()
        dec.receive_data(raw)
        dec.receive_data(b"")
        found = [
            (e.raw if e.crc_variant != "x25-msb" else e.body, e.body)  # smllib has no high-byte-first CRC
            for e in iter(dec.next_event, None)
            if isinstance(e, SmlFrame)
        ]
        frames += found or [(raw, raw)]  # bare message bytes: the peer reads them without the transport
    return frames


def test_corpus_agrees_with_smllib() -> None:
    frames = _corpus_frames()
    assert len(frames) >= 25
    assert _compare(frames) > 150


def _random_file(rng: random.Random, n: int) -> bytes:
    server = bytes((0x0A, 0x01)) + rng.choice([b"EMH", b"ISK", b"ESY", b"DZG"]) + rng.randbytes(5)
    entries = []
    for _ in range(rng.randint(1, 12)):
        obis = bytes((1, 0, rng.choice([1, 2, 16, 32, 31, 14, 36]), rng.choice([7, 8]), rng.randint(0, 2), 255))
        width = rng.randint(1, 8)
        signed = rng.random() < 0.5
        if rng.random() < 0.15:
            value: Any = rng.randbytes(rng.randint(0, 40))
        elif signed:
            value = Typed(rng.randint(-(1 << (8 * width - 1)), (1 << (8 * width - 1)) - 1), True, width)
        else:
            value = Typed(rng.randint(0, (1 << (8 * width)) - 1), False, width)
        status = Typed(rng.randint(0, 1 << 20), False, rng.choice([3, 4, 8])) if rng.random() < 0.5 else None
        val_time = SmlTime(rng.choice([1, 2]), rng.randint(0, 1 << 32 - 1)) if rng.random() < 0.3 else None
        unit = rng.choice([27, 30, 33, 35, 44, 255, None])
        entries.append(ListEntry(obis, status, val_time, unit, rng.randint(-5, 5), value))
    messages = [
        SmlMessage(n.to_bytes(4, "big"), 0, 0, PublicOpenRes(None, None, rng.randbytes(6), server)),
        SmlMessage((n + 1).to_bytes(4, "big"), 0, 0, GetListRes(None, server, None, SmlTime(1, n), tuple(entries))),
        SmlMessage((n + 2).to_bytes(4, "big"), 0, 0, PublicCloseRes()),
    ]
    return encode_file(messages)


def test_random_encoder_files_agree_with_smllib() -> None:
    rng = random.Random(20260101)
    files = [_random_file(rng, 3 * i) for i in range(300)]
    frames = [(raw, SmlFrame.from_bytes(raw).body) for raw in files]
    assert _compare(frames) > 1000
