"""TEMPORARY re-export while the billing-bridge commands move here (issue 11)."""

from billing_bridge.cli import BRIDGE_FAILED, BRIDGE_RETRY, BRIDGE_RUN, PAYMENTS_IMPORT
from billing_bridge.disconnect_cli import ARREARS_REPORT, DISCONNECT_PLAN, DISCONNECT_RUN

__all__ = [
    "ARREARS_REPORT",
    "BRIDGE_FAILED",
    "BRIDGE_RETRY",
    "BRIDGE_RUN",
    "DISCONNECT_PLAN",
    "DISCONNECT_RUN",
    "PAYMENTS_IMPORT",
]
