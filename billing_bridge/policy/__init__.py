"""The disconnect policy: a pure, table-driven engine over jurisdiction rule sets kept as data files.

``evaluate(ruleset, case, conditions) -> Decision``; rule sets are ``rulesets/*.toml`` loaded with
:func:`load_ruleset`. The engine does no I/O and reads no clock: callers pass ``now``, the forecast temperatures,
the holidays (:func:`holidays_for`) and the recent disconnect counts.
"""

from billing_bridge.policy.engine import NOT_YET_RULES, RULES, evaluate
from billing_bridge.policy.model import (
    Blackout,
    Conditions,
    Decision,
    DisconnectCase,
    LadderRung,
    RuleResult,
    RuleSet,
)
from billing_bridge.policy.rulesets import available_rulesets, holidays_for, load_ruleset, parse_ruleset

__all__ = [
    "Blackout",
    "Conditions",
    "Decision",
    "DisconnectCase",
    "LadderRung",
    "NOT_YET_RULES",
    "RULES",
    "RuleResult",
    "RuleSet",
    "available_rulesets",
    "evaluate",
    "holidays_for",
    "load_ruleset",
    "parse_ruleset",
]
