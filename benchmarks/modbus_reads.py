"""Modbus read cost: ``ModbusMeterClient.read_readings`` against the simulator, coalesced (the map's vendor limits)
versus a baseline of one request per value (``max_registers=2``), over TCP and RTU on a pty, in the same run.

    .venv/bin/python benchmarks/modbus_reads.py [--quick]

Prints one line per link and map, then ``RESULT modbus_reads ...`` with the speed-up of coalescing.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time

from amiflow.uri import parse_meter_uri
from protocols.modbus import ModbusMeterClient
from simulators.modbus import ModbusSimulator


async def _measure(sim: ModbusSimulator, extra: str, reads: int) -> tuple[float, int, int]:
    """(ms per read_readings, requests per read, readings per read)."""
    async with ModbusMeterClient(parse_meter_uri(sim.uri + extra)) as client:
        await client.register_map()
        first = client.requests
        batch = await client.read_readings(0)
        per_read = client.requests - first
        start = time.perf_counter()
        for _ in range(reads):
            await client.read_readings(0)
        return (time.perf_counter() - start) / reads * 1000.0, per_read, len(batch)


async def _run(reads: int) -> dict[str, float]:
    totals = {"coalesced": 0.0, "per_value": 0.0}
    for listen in ("tcp://127.0.0.1:0", "pty"):
        for map_name in ("sdm630", "sdm120"):
            async with ModbusSimulator(listen, map_name=map_name, clock=lambda: 1_767_268_800.0) as sim:
                ms, req, n = await _measure(sim, "", reads)
                base_ms, base_req, _ = await _measure(sim, "&max_registers=2", reads)
            totals["coalesced"] += ms
            totals["per_value"] += base_ms
            print(
                f"{sim.kind:3} {map_name}: {n} readings, coalesced {req} requests {ms:.1f} ms, "
                f"one per value {base_req} requests {base_ms:.1f} ms"
            )
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer reads (well under a minute)")
    args = parser.parse_args()
    logging.getLogger("pymodbus").setLevel(logging.ERROR)
    totals = asyncio.run(_run(10 if args.quick else 100))
    print(
        f"RESULT modbus_reads coalesced_ms={totals['coalesced'] / 4:.2f} per_value_ms={totals['per_value'] / 4:.2f} "
        f"speedup={totals['per_value'] / totals['coalesced']:.1f}"
    )


if __name__ == "__main__":
    main()
