"""DSMR P1: our telegrams checked by dsmr-parser (MIT) in a separate process, and a P1 stream read from a pty."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tty

from amiflow.uri import parse_meter_uri
from protocols.p1 import NEED_DATA, P1Splitter, dsmr5_telegram, parse_telegram
from protocols.transport import open_link

_PEER = r"""
import json, sys
from dsmr_parser import telegram_specifications
from dsmr_parser.parsers import TelegramParser
parser = TelegramParser(telegram_specifications.V5)
out = []
for text in json.load(sys.stdin):
    t = parser.parse(text)
    out.append({
        "t1": float(t.ELECTRICITY_USED_TARIFF_1.value), "t2": float(t.ELECTRICITY_USED_TARIFF_2.value),
        "e1": float(t.ELECTRICITY_DELIVERED_TARIFF_1.value), "p": float(t.CURRENT_ELECTRICITY_USAGE.value),
        "v1": float(t.INSTANTANEOUS_VOLTAGE_L1.value), "ts": t.P1_MESSAGE_TIMESTAMP.value.timestamp(),
        "gas": float(t.get_mbus_device_by_channel(1).MBUS_METER_READING.value), "id": t.EQUIPMENT_IDENTIFIER.value,
    })
json.dump(out, sys.stdout)
"""


def test_dsmr_parser_agrees_with_our_telegrams() -> None:
    telegrams = [
        dsmr5_telegram(
            equipment_id=f"E{i:07d}",
            ts=1_700_000_000 + 86_400 * 40 * i,  # crosses summer and winter time
            import_wh=(1_234_567 + i * 1001, 765_432 + i),
            export_wh=(4321 * i, 0),
            power_w=(250 * i, 0),
            voltage_v=(229.5 + i / 10, 230.0, 231.0),
            current_a=(i, 2, 3),
            gas_m3=(1000.125 + i, 1_700_000_000 + 86_400 * 40 * i - 600),
        )
        for i in range(8)
    ]
    proc = subprocess.run(
        [sys.executable, "-c", _PEER],
        input=json.dumps([t.decode() for t in telegrams]),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    theirs = json.loads(proc.stdout)
    for raw, peer in zip(telegrams, theirs, strict=True):
        batch, issues = parse_telegram(raw)
        assert issues == []
        ours = {o: (v, t) for o, v, t in zip(batch.obis, batch.value, batch.ts, strict=True)}
        assert ours["1-0:1.8.1"][0] == round(peer["t1"] * 1000)
        assert ours["1-0:1.8.2"][0] == round(peer["t2"] * 1000)
        assert ours["1-0:2.8.1"][0] == round(peer["e1"] * 1000)
        assert ours["1-0:1.7.0"][0] == round(peer["p"] * 1000)
        assert abs(ours["1-0:32.7.0"][0] - peer["v1"]) < 1e-9
        assert ours["1-0:1.8.1"][1] == int(peer["ts"])
        assert abs(ours["0-1:24.2.1"][0] - peer["gas"]) < 1e-9
        assert set(batch.meter) == {bytes.fromhex(peer["id"]).decode()}


async def test_p1_stream_over_a_pty() -> None:
    master, slave = os.openpty()
    tty.setraw(master)
    try:
        uri = parse_meter_uri(f"p1://{os.ttyname(slave)}")
        sent = [dsmr5_telegram(equipment_id="P1PTY", ts=1_700_000_000 + s, import_wh=(s, 0)) for s in range(5)]
        stream = b"\x00tail of an earlier telegram!12\r\n" + b"".join(sent)
        splitter = P1Splitter()
        got: list[bytes] = []
        async with open_link(uri, timeout_s=2.0) as link:
            for i in range(0, len(stream), 97):  # the meter's UART writes in odd chunks
                os.write(master, stream[i : i + 97])
            while len(got) < len(sent):
                splitter.receive_data(await link.read())
                while (t := splitter.next_event()) is not NEED_DATA:
                    got.append(t)
        assert got == sent
        assert [parse_telegram(t)[0].ts[0] for t in got] == [1_700_000_000 + s for s in range(5)]
    finally:
        await asyncio.sleep(0)
        os.close(master)
        os.close(slave)
