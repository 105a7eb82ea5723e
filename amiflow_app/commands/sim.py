"""``amiflow sim mqtt``: the MQTT fleet simulator's options and the glue that runs it.

``sim mqtt`` publishes into the broker of ``AMIFLOW_MQTT_URL`` and, when none is configured, starts the embedded
broker (:mod:`amiflow_app.broker`) and prints its URL. The simulators of polled meters (Modbus, DLMS, IEC 62056-21,
M-Bus) are in :mod:`amiflow_app.commands.sim_polled`, the SML push meter in :mod:`amiflow_app.commands.sim_push`;
the simulators themselves live in :mod:`simulators`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from amiflow.settings import Settings
from amiflow_app.command import Command
from amiflow_app.commands.sim_serve import parse_start
from simulators.fleet_config import FleetConfig
from simulators.mqtt_fleet import MqttFleet

__all__ = ["SIM_MQTT"]


def _add_mqtt_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--meters", type=int, required=True, help="number of meters (1 to 100,000 in one process)")
    p.add_argument("--start", required=True, help="first interval start, ISO 8601 with offset or Z")
    p.add_argument("--days", type=float, default=1.0, help="simulated days (default 1)")
    p.add_argument("--interval", type=int, default=900, help="interval length in seconds (default 900)")
    p.add_argument(
        "--speed", type=float, default=0.0, help="1 = real time, X = X times faster, 0 = as fast as possible"
    )
    p.add_argument("--seed", type=int, default=1, help="seed of the load model and the faults (default 1)")
    p.add_argument("--faults", default="", help="fault spec, e.g. dup=0.01,gap=0.002,spoof=0.0005 (docs/simulators.md)")
    p.add_argument("--prefix", default="ami/v1", help="topic prefix (default ami/v1)")
    p.add_argument("--per-message", type=int, default=96, help="intervals per message (96 = a day, 1 = one interval)")
    p.add_argument("--meter-prefix", default="M", help="meter name prefix (default M: M000001, M000002, ...)")
    p.add_argument("--stats", type=Path, help="write a JSON of what was published to this file")
    p.add_argument("--pv-share", type=float, default=0.2, help="share of meters with PV export (default 0.2)")
    p.add_argument("--commercial-share", type=float, default=0.2, help="share of commercial meters (default 0.2)")
    p.add_argument("--armed-share", type=float, default=0.1, help="share of meters that reconnect to 'armed'")
    p.add_argument("--connections", type=int, default=0, help="MQTT connections (default: one per meter up to 100)")
    p.add_argument("--window", type=int, default=1000, help="unacknowledged QoS 1 messages per connection")
    p.add_argument("--linger", type=float, default=0.0, help="seconds to keep answering commands after the last day")


def _fleet_config(args: argparse.Namespace) -> FleetConfig:
    return FleetConfig(
        meters=args.meters,
        start=parse_start(args.start),
        days=args.days,
        interval_s=args.interval,
        speed=args.speed,
        seed=args.seed,
        faults=args.faults,
        prefix=args.prefix,
        per_message=args.per_message,
        meter_prefix=args.meter_prefix,
        stats_path=args.stats,
        pv_share=args.pv_share,
        commercial_share=args.commercial_share,
        armed_share=args.armed_share,
        connections=args.connections,
        window=args.window,
        linger_s=args.linger,
    )


@contextlib.contextmanager
def _broker_url(settings: Settings) -> Iterator[str]:
    """The configured broker, or an embedded one (started here, its URL printed) for as long as the fleet runs."""
    if settings.mqtt_url is not None:
        yield settings.mqtt_url
        return
    from amiflow_app.broker import EmbeddedBroker

    broker = EmbeddedBroker().start()
    try:
        print(f"embedded broker at {broker.url}", flush=True)
        yield broker.url
    finally:
        broker.stop()


def _run_mqtt(args: argparse.Namespace, settings: Settings) -> int:
    config = _fleet_config(args)
    with _broker_url(settings) as url:
        fleet = MqttFleet(config, url)

        def _on_signal(_signum: int, _frame: FrameType | None) -> None:
            fleet.stop()

        # SIGTERM and Ctrl-C: stop generating, drain, go offline, disconnect cleanly
        previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            stats = fleet.run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    print(json.dumps(stats.to_dict(), separators=(",", ":")))
    return 0


SIM_MQTT = Command(
    help="a fleet of MQTT meters publishing readings, events and status",
    add_arguments=_add_mqtt_arguments,
    run=_run_mqtt,
)
