"""TEMPORARY re-export while the simulator commands move here (issue 11)."""

from simulators.dlms import SIM_DLMS
from simulators.iec62056_21 import SIM_IEC62056_21
from simulators.modbus import SIM_MODBUS
from simulators.mqtt_fleet import SIM_MQTT

__all__ = ["SIM_DLMS", "SIM_IEC62056_21", "SIM_MODBUS", "SIM_MQTT"]
