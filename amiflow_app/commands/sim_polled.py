"""``amiflow sim modbus|dlms|iec62056-21``: simulated meters a head-end polls, each serving until signalled.

``sim mbus`` is in :mod:`amiflow_app.commands.sim_mbus`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from datetime import UTC, datetime

from amiflow.errors import ConfigError
from amiflow.settings import Settings
from amiflow_app.command import Command
from amiflow_app.commands.sim_serve import WIRING_HELP, serve_until_signalled
from protocols.dlms.security import SecurityKeys
from protocols.modbus.maps import SUNSPEC_METER_MODELS
from simulators.dlms import DlmsSimulator
from simulators.iec62056_21 import FAULTS as IEC_FAULTS
from simulators.iec62056_21 import IecSimulator
from simulators.modbus import ModbusSimulator

__all__ = ["SIM_DLMS", "SIM_IEC62056_21", "SIM_MODBUS"]


def _add_modbus_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--listen",
        default="tcp://127.0.0.1:0",
        help="tcp://127.0.0.1:PORT (0 = pick one), pty (prints the path), or rtu:///dev/ttyX (an existing device)",
    )
    p.add_argument("--map", default="sdm630", help="sdm630, sdm120, sunspec, or with a relay: sdm630+breaker")
    p.add_argument("--unit", type=int, default=1, help="Modbus device id (default 1)")
    p.add_argument("--meter-index", type=int, default=0, help="which meter of the load model (default 0)")
    p.add_argument("--seed", type=int, default=1, help="load model seed (default 1)")
    p.add_argument("--faults", default="", help="timeout=R,corrupt=R,exception=R,truncate=R,drift=SECONDS")
    p.add_argument("--word-order", choices=("big", "little"), default="big", help="float32 word order")
    p.add_argument("--wiring", default="", help=WIRING_HELP)
    p.add_argument("--sunspec-base", type=int, default=40000, choices=(0, 40000, 50000))
    p.add_argument(
        "--sunspec-model",
        type=int,
        default=203,
        choices=SUNSPEC_METER_MODELS,
        help="SunSpec meter model: 201-204 int16/acc32 with scale factors, 211-214 float32 (default 203)",
    )


def _run_modbus(args: argparse.Namespace, settings: Settings) -> int:
    async def serve() -> None:
        sim = ModbusSimulator(
            args.listen,
            map_name=args.map,
            unit=args.unit,
            meter_index=args.meter_index,
            seed=args.seed,
            faults=args.faults,
            word_order=args.word_order,
            sunspec_base=args.sunspec_base,
            sunspec_meter_model=args.sunspec_model,
            wiring=args.wiring,
        )
        async with sim:
            where = f"port {sim.port}" if sim.kind == "tcp" else f"{sim.kind} {sim.path}"
            print(f"modbus simulator ({args.map}, unit {args.unit}) listening on {where}: {sim.uri}", flush=True)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


SIM_MODBUS = Command(
    help="serve a simulated Modbus energy meter (TCP or RTU on a pty)",
    add_arguments=_add_modbus_arguments,
    run=_run_modbus,
)


# -- sim dlms -------------------------------------------------------------------------------------------------------


def _add_dlms_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", default="tcp://127.0.0.1:0", help="tcp://127.0.0.1:PORT (0 = pick one) or pty")
    p.add_argument("--hdlc", action="store_true", help="HDLC framing on TCP (a pty always uses HDLC)")
    p.add_argument("--auth", default="none", choices=("none", "lls", "hls-gmac"), help="management client auth")
    p.add_argument("--password", default=None, help="the LLS password of the management client (SAP 1)")
    p.add_argument("--meter", default=None, help="serial number / meter id (default from --meter-index)")
    p.add_argument("--meter-index", type=int, default=0, help="which meter of the load model (default 0)")
    p.add_argument("--seed", type=int, default=1, help="seed of the load model and of the faults (default 1)")
    p.add_argument("--start", default=None, help="ISO time the load profile starts (default 10 days ago)")
    p.add_argument("--faults", default=None, help="e.g. timeout=0.05,bad_crc=0.05,exception=0.02,clock_drift=120")
    p.add_argument("--control-mode", type=int, default=1, choices=range(7), help="disconnect control_mode (1)")
    p.add_argument("--keys", default=None, help="HLS-GMAC EK:AK in hex (default the Green Book example keys)")
    p.add_argument("--phases", type=int, default=1, choices=(1, 3), help="1 (L1 only) or 3 phases (default 1)")
    p.add_argument("--profile", default="deltas", choices=("deltas", "registers"), help="profile columns")
    p.add_argument("--wiring", default="", help=WIRING_HELP)


def _dlms_keys(text: str | None) -> SecurityKeys | None:
    if not text:
        return None
    ek, _, ak = text.partition(":")
    try:
        return SecurityKeys(bytes.fromhex(ek), bytes.fromhex(ak))
    except ValueError:
        raise ConfigError("--keys: expected EK:AK, two 16-byte keys in hex") from None


def _dlms_start(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        start = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--start {text!r}: expected an ISO 8601 time") from None
    return start if start.tzinfo is not None else start.replace(tzinfo=UTC)


def _run_dlms(args: argparse.Namespace, settings: Settings) -> int:
    sim = DlmsSimulator(
        args.listen,
        hdlc=args.hdlc,
        auth=args.auth,
        password=args.password.encode() if args.password else None,
        meter=args.meter,
        seed=args.seed,
        meter_index=args.meter_index,
        start=_dlms_start(args.start),
        faults=args.faults,
        control_mode=args.control_mode,
        register_profile=args.profile == "registers",
        phases=args.phases,
        keys=_dlms_keys(args.keys),
        wiring=args.wiring,
    )
    serve_until_signalled(sim, f"dlms simulator (meter {sim.meter.serial})")
    return 0


SIM_DLMS = Command(
    help="serve a simulated DLMS/COSEM meter (TCP wrapper or HDLC, TCP or a pty)",
    add_arguments=_add_dlms_arguments,
    run=_run_dlms,
)


# -- sim iec62056-21 ------------------------------------------------------------------------------------------------


def _add_iec_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", default="tcp://127.0.0.1:0", help="tcp://127.0.0.1:PORT (0 = pick one) or pty")
    p.add_argument("--seed", type=int, default=1, help="seed of the load model (default 1)")
    p.add_argument("--meter-index", type=int, default=0, help="which meter of the load model (default 0)")
    p.add_argument("--serial", help="serial number shown as 0-0:96.1.0 and C.1.0 (default from the meter index)")
    p.add_argument("--address", default="", help="device address the meter answers to besides '/?!'")
    p.add_argument("--baud", default="5", choices=list("0123456"), help="baud char offered (5 = 9600, default)")
    p.add_argument("--tz", default="UTC", help="zone of the meter clock (default UTC)")
    p.add_argument("--drift", type=float, default=0.0, help="meter clock drift in seconds (default 0)")
    p.add_argument("--fault", action="append", default=[], choices=IEC_FAULTS, help="inject this fault (repeatable)")
    p.add_argument(
        "--wiring", default="", help="installation fault shown in the readout: voltage=V (simulators.wiring)"
    )
    p.add_argument("--fault-rate", type=float, default=1.0, help="share of sessions with a fault (default 1)")


def _run_iec(args: argparse.Namespace, settings: Settings) -> int:
    sim = IecSimulator(
        args.listen,
        seed=args.seed,
        meter_index=args.meter_index,
        serial=args.serial,
        address=args.address,
        baud_char=args.baud,
        tz=args.tz,
        drift_s=args.drift,
        faults=args.fault,
        fault_rate=args.fault_rate,
        wiring=args.wiring,
    )
    serve_until_signalled(sim, f"iec62056-21 simulator (serial {sim.serial})")
    return 0


SIM_IEC62056_21 = Command(
    help="serve a simulated IEC 62056-21 mode C meter (TCP or a pty)", add_arguments=_add_iec_arguments, run=_run_iec
)
