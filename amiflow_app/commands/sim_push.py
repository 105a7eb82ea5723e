"""``amiflow sim sml``: an SML push meter (the optical port of German/Austrian meters) on a pty or TCP."""

from __future__ import annotations

import argparse

from amiflow.errors import ConfigError
from amiflow.settings import Settings
from amiflow_app.command import Command
from amiflow_app.commands.sim_serve import serve_until_signalled
from simulators.sml_meter import FAULTS as SML_FAULTS
from simulators.sml_meter import PROFILES as SML_PROFILES
from simulators.sml_meter import SmlSimulator

__all__ = ["SIM_SML"]


def _add_sml_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", default="tcp://127.0.0.1:0", help="tcp://127.0.0.1:PORT (0 = pick one) or pty")
    p.add_argument("--profile", default="ehz", choices=SML_PROFILES, help="the make it looks like (default ehz)")
    p.add_argument("--seed", type=int, default=1, help="seed of the load model and the faults (default 1)")
    p.add_argument("--meter-index", type=int, default=0, help="which meter of the load model (default 0)")
    p.add_argument("--interval", default="1,4", help="seconds between pushes: LOW,HIGH (random) or one number")
    p.add_argument("--faults", default="", help=f"comma-separated faults to inject: {', '.join(SML_FAULTS)}")
    p.add_argument("--fault-rate", type=float, default=0.2, help="share of pushes with a fault (default 0.2)")


def _sml_interval(text: str) -> tuple[float, float]:
    try:
        parts = [float(p) for p in text.split(",")]
    except ValueError:
        raise ConfigError(f"--interval {text!r}: expected seconds, LOW,HIGH or one number") from None
    if len(parts) not in (1, 2):
        raise ConfigError(f"--interval {text!r}: expected seconds, LOW,HIGH or one number")
    return parts[0], parts[-1]


def _run_sml(args: argparse.Namespace, settings: Settings) -> int:
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    sim = SmlSimulator(
        args.listen,
        profile=args.profile,
        seed=args.seed,
        meter_index=args.meter_index,
        interval_s=_sml_interval(args.interval),
        faults=faults,
        fault_rate=args.fault_rate,
    )
    serve_until_signalled(sim, f"sml push meter ({args.profile}, server id {sim.meter.meter_id})")
    return 0


SIM_SML = Command(
    help="simulate an SML push meter (eHZ, Itron, EasyMeter) on TCP or a pty", add_arguments=_add_sml_arguments,
    run=_run_sml,
)  # fmt: skip
