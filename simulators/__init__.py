"""amiflow simulators: meters of every protocol the head-end reads, fed by one seeded load model, with faults.

- the MQTT fleet (:class:`MqttFleet`, :func:`run_fleet`, :func:`run_fleet_async`; options :class:`FleetConfig`,
  result :class:`FleetStats`): up to 100,000 meters publishing canonical payloads into a broker;
- polled meters served on loopback TCP or a pty: :class:`ModbusSimulator`, :class:`DlmsSimulator` and
  :class:`IecSimulator` (IEC 62056-21 mode C);
- :class:`LoadModel`: the seeded import/export energy every simulator shows; :mod:`simulators.faults` the fault specs.

The ``amiflow sim ...`` commands are in :mod:`amiflow_app.commands.sim`. See docs/simulators.md.
"""

from simulators.dlms import DlmsSimulator
from simulators.fleet_config import FleetConfig, FleetStats
from simulators.iec62056_21 import IecSimulator
from simulators.load import LoadModel
from simulators.modbus import ModbusSimulator
from simulators.mqtt_fleet import MqttFleet, run_fleet, run_fleet_async

__all__ = [
    "DlmsSimulator",
    "FleetConfig",
    "FleetStats",
    "IecSimulator",
    "LoadModel",
    "ModbusSimulator",
    "MqttFleet",
    "run_fleet",
    "run_fleet_async",
]
