"""``amiflow sim mbus`` (a wired segment a head-end polls) and ``amiflow sim wmbus`` (wireless meters that send)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from pathlib import Path

from amiflow.errors import ConfigError
from amiflow.settings import Settings
from amiflow_app.command import Command
from amiflow_app.commands.sim_serve import parse_start, serve_until_signalled, stop_on_signals
from simulators.mbus_meter import FAULTS as MBUS_FAULTS
from simulators.mbus_meter import MbusBusSimulator
from simulators.mbus_wireless import WMBUS_FAULTS, WmbusSimulator

__all__ = ["SIM_MBUS", "SIM_WMBUS"]


def _write_private(path: Path, text: str) -> None:
    """A file of keys (mode 0600)."""
    try:
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--keys-out {path}: cannot write ({exc.strerror})") from None


def _add_mbus_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", default="tcp://127.0.0.1:0", help="tcp://127.0.0.1:PORT (0 = pick one) or pty")
    p.add_argument("--devices", default=None, help="KIND:ADDRESS[:IDENT],... (heat:1,water:2,gas:3,electricity:4)")
    p.add_argument("--seed", type=int, default=1, help="seed of the meters' values, keys and faults (default 1)")
    p.add_argument("--fault", action="append", default=[], choices=MBUS_FAULTS, help="inject this fault (repeatable)")
    p.add_argument("--fault-rate", type=float, default=0.2, help="share of answers with a fault (default 0.2)")
    p.add_argument("--encrypt", action="store_true", help="send OMS security mode 5 (AES-128) with per-meter keys")
    p.add_argument("--keys-out", type=Path, help="write the meters as an `amiflow meters import` CSV with their keys")


def _run_mbus(args: argparse.Namespace, settings: Settings) -> int:
    faults, rate = args.fault, args.fault_rate
    sim = MbusBusSimulator(args.listen, devices=args.devices, seed=args.seed, faults=faults, fault_rate=rate,
                           encrypt=args.encrypt)  # fmt: skip
    names = ", ".join(f"{s.kind}@{s.address}#{s.ident}" for s in sim.slaves)

    def registry() -> str:
        rows = ["meter,protocol,uri,timezone,tariff,account,key"]
        for s in sim.slaves:
            key = s.key.hex() if s.key is not None else ""
            rows.append(f"M{s.ident},mbus,{sim.uri}?address={s.address},UTC,,,{key}")
        return "\n".join(rows) + "\n"

    on_start = (lambda: _write_private(args.keys_out, registry())) if args.keys_out else None
    serve_until_signalled(sim, f"mbus segment ({names})", on_start=on_start)
    return 0


def _add_wmbus_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", default="tcp://127.0.0.1:0",
                   help="tcp://127.0.0.1:PORT (0 = pick one: every receiver that connects hears it), pty, or -"
                   " (standard output, e.g. piped into `amiflow ingest wmbus --from -`)")  # fmt: skip
    p.add_argument("--devices", default=None, help="KIND:IDENT,... (default water:51000001,heat:51000002)")
    p.add_argument("--seed", type=int, default=1, help="seed of the meters' values, keys and faults (default 1)")
    p.add_argument("--plain", action="store_true", help="send unencrypted (default: mode 5 with per-meter keys)")
    p.add_argument("--frame-format", choices=("A", "B"), default="A", help="A (T1, default) or B (C1)")
    p.add_argument("--format", choices=("hex", "raw"), default="hex", help="hex lines (default) or raw frames")
    p.add_argument("--every", type=float, default=5.0, metavar="S", help="seconds between rounds (default 5)")
    p.add_argument("--count", type=int, default=0, help="stop after this many rounds (default: until signalled)")
    p.add_argument("--stamp", action="store_true", help="start each hex line with its time (ISO 8601;HEX), as a log")
    p.add_argument("--start", type=parse_start, help="the meters' time at the first round, ISO 8601 (default: now)")
    p.add_argument("--step", type=float, help="the meters' seconds per round (default: --every, as in real time)")
    p.add_argument("--fault", action="append", default=[], choices=WMBUS_FAULTS, help="inject this fault")
    p.add_argument("--fault-rate", type=float, default=0.1, help="share of frames with a fault (default 0.1)")
    p.add_argument("--keys-out", type=Path, help="write the meters as an `amiflow meters import` CSV with their keys")


def _run_wmbus(args: argparse.Namespace, settings: Settings) -> int:
    if args.every < 0 or args.count < 0:
        raise ConfigError("--every and --count must not be negative")
    sim = WmbusSimulator(
        args.listen,
        devices=args.devices,
        seed=args.seed,
        encrypt=not args.plain,
        fmt=args.frame_format,
        mode=args.format,
        faults=args.fault,
        fault_rate=args.fault_rate,
    )
    if args.keys_out:
        _write_private(args.keys_out, sim.registry_csv())
    names = ", ".join(f"{m.kind}#{m.ident}" for m in sim.meters)
    start = time.time() if args.start is None else args.start.timestamp()
    step = args.every if args.step is None else args.step

    async def main() -> None:
        stop = stop_on_signals()
        async with sim:
            print(f"wmbus meters ({names}) sending on {sim.uri if sim.kind != 'stdout' else 'standard output'}",
                  file=sys.stderr, flush=True)  # fmt: skip
            n = 0
            while not stop.is_set() and (args.count == 0 or n < args.count):
                await sim.send(start + n * step, stamp=args.stamp)
                n += 1
                if args.count == 0 or n < args.count:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), args.every)

    asyncio.run(main())
    return 0


SIM_MBUS = Command(
    help="simulate an M-Bus segment of heat, water, gas and electricity meters", add_arguments=_add_mbus_arguments,
    run=_run_mbus,
)  # fmt: skip
SIM_WMBUS = Command(
    help="simulate wireless M-Bus meters sending (encrypted) frames as hex lines or raw bytes",
    add_arguments=_add_wmbus_arguments, run=_run_wmbus,
)  # fmt: skip
