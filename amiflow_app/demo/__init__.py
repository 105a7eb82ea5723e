"""``amiflow demo``: the whole head-end on simulated meters, from MQTT and polled meters to bills and disconnects.

:func:`run_demo` runs the steps of :mod:`amiflow_app.demo.steps` (the MQTT month, VEE, bills, delivery),
:mod:`amiflow_app.demo.polled` (DLMS, IEC 62056-21 and Modbus meters) and :mod:`amiflow_app.demo.collect` (reminders,
disconnect and reconnect), planned by :mod:`amiflow_app.demo.plan`.
"""

from amiflow_app.demo.plan import DemoPlan, Summary, format_summary, plan_demo
from amiflow_app.demo.run import POLLED_PARTS, QUICK_POLL_DAYS, run_demo

__all__ = ["POLLED_PARTS", "QUICK_POLL_DAYS", "DemoPlan", "Summary", "format_summary", "plan_demo", "run_demo"]
