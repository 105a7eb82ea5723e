"""Cross-check against an independent DLMS/COSEM stack: gurux-dlms (GPL-2.0, so only ever in a child process,
never imported here or by product code) reads amiflow's simulator, and must see what amiflow's own DlmsClient sees:
serial, energy register with scaler_unit, capture objects, a day of load profile through range selective access
(GET blocks; HDLC segments), the disconnect control, LLS and a refused wrong password, and an HLS-GMAC
ciphered session (gurux's own AES-GCM and pass 3/4) with a refused wrong key."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from amiflow.uri import parse_meter_uri
from protocols.dlms import DlmsClient
from simulators.dlms import DlmsSimulator

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gurux_dlms") is None,
    reason="gurux-dlms (the independent peer) is not installed: pip install -e '.[test]'",
)

NOW = datetime(2026, 11, 3, 12, 7, 30, tzinfo=UTC)

PEER = r"""
import datetime, json, socket, sys
from gurux_dlms import GXByteBuffer, GXDLMSClient, GXReplyData
from gurux_dlms.enums import Authentication, InterfaceType
from gurux_dlms.objects import GXDLMSClock, GXDLMSData, GXDLMSDisconnectControl, GXDLMSProfileGeneric, GXDLMSRegister

host, port, iface, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
client = GXDLMSClient(True, 1 if password else 16, 1, Authentication.LOW if password else Authentication.NONE,
                      password or None, InterfaceType.HDLC if iface == "hdlc" else InterfaceType.WRAPPER)
sock = socket.create_connection((host, port), timeout=10)

def packet(data, reply):
    sock.sendall(bytes(data))
    buf, notify = GXByteBuffer(), GXReplyData()
    while not client.getData(buf, reply, notify):
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("connection closed")
        buf.set(chunk)

def exchange(data):
    reply = GXReplyData()
    for frame in data if isinstance(data, list) else [data]:
        reply.clear()
        packet(frame, reply)
        while reply.isMoreData():
            packet(client.receiverReady(reply), reply)
    return reply

def read(obj, attr):
    client.updateValue(obj, attr, exchange(client.read(obj, attr)).value)

out = {}
try:
    if iface == "hdlc":
        client.parseUAResponse(exchange(client.snrmRequest()).data)
    client.parseAareResponse(exchange(client.aarqRequest()).data)
except Exception as exc:
    print(json.dumps({"refused": str(exc)}))
    sys.exit(0)
serial = GXDLMSData("0.0.96.1.0.255"); read(serial, 2)
out["serial"] = bytes(serial.value).decode() if isinstance(serial.value, (bytes, bytearray)) else str(serial.value)
reg = GXDLMSRegister("1.0.1.8.0.255"); read(reg, 3); read(reg, 2)
out["energy_wh"] = float(reg.value) * float(reg.scaler)
out["energy_unit"] = int(reg.unit)
clock = GXDLMSClock(); read(clock, 2)
out["clock"] = clock.time.value.isoformat()
pg = GXDLMSProfileGeneric("1.0.99.1.0.255"); read(pg, 3); read(pg, 4)
out["capture"] = [[int(o.objectType), o.logicalName, a.attributeIndex] for o, a in pg.captureObjects]
start, end = (datetime.datetime.fromisoformat(a) for a in sys.argv[5:7])
client.updateValue(pg, 2, exchange(client.readRowsByRange(pg, start, end)).value)
out["rows"] = [[int(row[0].value.timestamp()), float(row[1])] for row in pg.buffer]
dc = GXDLMSDisconnectControl("0.0.96.3.10.255"); read(dc, 2); read(dc, 3)
out["relay"] = [bool(dc.outputState), int(dc.controlState)]
if password:
    exchange(client.method(dc, 1, 0, 15))
    read(dc, 3)
    out["after_disconnect"] = int(dc.controlState)
exchange(client.releaseRequest())
if iface == "hdlc":
    exchange(client.disconnectRequest())
print(json.dumps(out))
"""


async def _gurux(tmp_path: Path, sim: DlmsSimulator, iface: str, password: str, start: datetime) -> dict[str, Any]:
    script = tmp_path / "gurux_peer.py"
    script.write_text(PEER)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        "127.0.0.1",
        str(sim.port),
        iface,
        password,
        start.isoformat(),
        NOW.isoformat(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


@pytest.mark.parametrize(("hdlc", "password"), [(False, ""), (True, "secret")], ids=["wrapper-public", "hdlc-lls"])
async def test_gurux_reads_what_amiflow_reads(tmp_path: Path, hdlc: bool, password: str) -> None:
    sim = DlmsSimulator(
        "tcp://127.0.0.1:0",
        hdlc=hdlc,
        auth="lls" if password else "none",
        password=password.encode() or None,
        meter="GX1",
        seed=11,
        meter_index=3,
        start=NOW - timedelta(days=3),
        clock=lambda: NOW.timestamp(),
    )
    await sim.start()
    try:
        start = NOW - timedelta(days=1)
        uri = parse_meter_uri(sim.uri)
        async with DlmsClient(uri, timeout_s=5) as ours:  # the public client: read only
            ident = await ours.identify()
            energy, unit = await ours.read_register("1-0:1.8.0")
            clock = await ours.read_clock()
            profile = await ours.read_profile("1-0:99.1.0", start, NOW)
        peer = await _gurux(tmp_path, sim, "hdlc" if hdlc else "wrapper", password, start)
    finally:
        await sim.stop()
    assert peer["serial"] == ident["serial"] == "GX1"
    assert (peer["energy_wh"], peer["energy_unit"]) == (pytest.approx(energy), 30) and unit == "Wh"
    assert datetime.fromisoformat(peer["clock"]) == clock
    assert peer["capture"][:2] == [[8, "0.0.1.0.0.255", 2], [3, "1.0.1.29.0.255", 2]]
    ours_rows = [
        [int(t), v] for t, v, o in zip(profile.ts, profile.value, profile.obis, strict=True) if o == "1-0:1.29.0"
    ]
    peer_rows = [r for r in peer["rows"] if r[0] > int(start.timestamp())]  # gurux asks from..to inclusive
    assert len(ours_rows) == 96 and peer_rows == ours_rows
    assert peer["relay"] == [True, 1]
    if password:
        assert peer["after_disconnect"] == 0  # the LLS management client may act


async def test_gurux_wrong_password_is_refused(tmp_path: Path) -> None:
    sim = DlmsSimulator("tcp://127.0.0.1:0", hdlc=True, auth="lls", password=b"secret", meter="GX2")
    await sim.start()
    try:
        peer = await _gurux(tmp_path, sim, "hdlc", "wrong", NOW - timedelta(hours=1))
    finally:
        await sim.stop()
    assert "Authentication failure" in peer["refused"]


HLS_PEER = r"""
import json, socket, sys
from gurux_dlms import GXByteBuffer, GXReplyData
from gurux_dlms.enums import Authentication, InterfaceType, Security
from gurux_dlms.objects import GXDLMSData, GXDLMSDisconnectControl, GXDLMSRegister
from gurux_dlms.secure import GXDLMSSecureClient

host, port, iface, ak = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
client = GXDLMSSecureClient(True, 1, 1, Authentication.HIGH_GMAC, None,
                            InterfaceType.HDLC if iface == "hdlc" else InterfaceType.WRAPPER)
client.ciphering.security = Security.AUTHENTICATION_ENCRYPTION
client.ciphering.systemTitle = bytes.fromhex("4758580000000001")
client.ciphering.blockCipherKey = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
client.ciphering.authenticationKey = bytes.fromhex(ak)
client.ciphering.invocationCounter = 5
sock = socket.create_connection((host, port), timeout=10)

def packet(data, reply):
    sock.sendall(bytes(data))
    buf, notify = GXByteBuffer(), GXReplyData()
    while not client.getData(buf, reply, notify):
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("connection closed")
        buf.set(chunk)

def exchange(data):
    reply = GXReplyData()
    for frame in data if isinstance(data, list) else [data]:
        reply.clear()
        packet(frame, reply)
        while reply.isMoreData():
            packet(client.receiverReady(reply), reply)
    return reply

def read(obj, attr):
    client.updateValue(obj, attr, exchange(client.read(obj, attr)).value)

out = {}
try:
    if iface == "hdlc":
        client.parseUAResponse(exchange(client.snrmRequest()).data)
    client.parseAareResponse(exchange(client.aarqRequest()).data)
    client.parseApplicationAssociationResponse(exchange(client.getApplicationAssociationRequest()).data)
except Exception as exc:
    print(json.dumps({"refused": str(exc)}))
    sys.exit(0)
serial = GXDLMSData("0.0.96.1.0.255"); read(serial, 2)
out["serial"] = bytes(serial.value).decode() if isinstance(serial.value, (bytes, bytearray)) else str(serial.value)
reg = GXDLMSRegister("1.0.1.8.0.255"); read(reg, 3); read(reg, 2)
out["energy_wh"] = float(reg.value) * float(reg.scaler)
dc = GXDLMSDisconnectControl("0.0.96.3.10.255")
exchange(client.method(dc, 1, 0, 15)); read(dc, 3)
out["after_disconnect"] = int(dc.controlState)
exchange(client.releaseRequest())
if iface == "hdlc":
    exchange(client.disconnectRequest())
print(json.dumps(out))
"""
GREEN_BOOK_AK = "D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF"  # the simulator's default keys (the Green Book example)


@pytest.mark.parametrize("hdlc", [False, True], ids=["wrapper", "hdlc"])
async def test_gurux_hls_gmac_session(tmp_path: Path, hdlc: bool) -> None:
    """gurux's own AES-GCM and HLS-GMAC pass 3/4 against amiflow's (security.py + the simulator): a ciphered read and
    ACTION succeed with the right keys, and a wrong authentication key is refused."""
    sim = DlmsSimulator("tcp://127.0.0.1:0", hdlc=hdlc, auth="hls-gmac", meter="HX1", clock=lambda: NOW.timestamp())
    script = tmp_path / "gurux_hls.py"
    script.write_text(HLS_PEER)
    await sim.start()
    try:
        results = []
        for ak in (GREEN_BOOK_AK, "00" * 16):
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(script),
                "127.0.0.1",
                str(sim.port),
                "hdlc" if hdlc else "wrapper",
                ak,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, err.decode()[-2000:]
            results.append(json.loads(out.decode().strip().splitlines()[-1]))
        async with DlmsClient(parse_meter_uri(sim.uri), timeout_s=5) as ours:  # public client, no ciphering
            energy, _ = await ours.read_register("1-0:1.8.0")
    finally:
        await sim.stop()
    good, wrong = results
    assert good["serial"] == "HX1" and good["energy_wh"] == pytest.approx(energy)
    assert good["after_disconnect"] == 0
    assert "Authentication failure" in wrong["refused"]
