"""amiflow billing bridge: the outbox to the billing system, and collections under the disconnect policy.

Bills and notices leave through the outbox::

    dispatcher = build_dispatcher(settings, db_url)       # webhook sink from the settings; None without a URL
    await dispatcher.run()                                # or Dispatcher(db_url, make_sink(settings, "cim"), config)

Collections charge prepaid accounts, send reminders, decide disconnects under a rule set (:mod:`billing_bridge.policy`)
and switch relays::

    with exclusive(conn):                                 # or run_collections(conn, ruleset, settings, ...) for all
        plan_disconnects(conn, ruleset, now=now, forecast_c=(lo, hi), issue=True)
        schedule_reconnects(conn, ruleset, now=now, within_s=900)
        await run_commands(conn, {"mqtt": mqtt_driver})   # read back, retried, escalated

Payments and balances come in through :mod:`billing_bridge.payments` and :mod:`billing_bridge.api`. See docs/bridge.md
and docs/disconnect-policy.md.
"""

from billing_bridge.collections_run import CollectionsRun, run_collections
from billing_bridge.command_run import CommandOutcome, run_commands, run_pending_commands
from billing_bridge.disconnect_plan import PlanItem, plan_disconnects, schedule_reconnects
from billing_bridge.dispatcher import DispatchConfig, Dispatcher, build_dispatcher
from billing_bridge.meter_commands import exclusive, issue_command
from billing_bridge.prepaid import update_prepaid
from billing_bridge.relay_drivers import DlmsRelayDriver, ModbusRelayDriver, MqttRelayDriver, RelayDriver
from billing_bridge.reminders import riskiest_accounts, send_reminders
from billing_bridge.sinks import make_sink

__all__ = [
    "CollectionsRun",
    "CommandOutcome",
    "DispatchConfig",
    "Dispatcher",
    "DlmsRelayDriver",
    "ModbusRelayDriver",
    "MqttRelayDriver",
    "PlanItem",
    "RelayDriver",
    "build_dispatcher",
    "exclusive",
    "issue_command",
    "make_sink",
    "plan_disconnects",
    "riskiest_accounts",
    "run_collections",
    "run_commands",
    "run_pending_commands",
    "schedule_reconnects",
    "send_reminders",
    "update_prepaid",
]
