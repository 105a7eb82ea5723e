"""VEE (validation, estimation and editing) of interval energy, pure numpy over meters x intervals.

::

    inp = VeeInput(ts, values_wh, period_from=p0, local_s=local_start_s(ts, 900, tz), register_delta_wh=delta)
    result = run_vee(inp, VeeConfig())
    result.post            # billed values, every estimate flagged ESTIMATED (EDITED where an original existed)
    result.summary(i)      # the bill's ``vee`` object: counts per rule, estimated share, hold reason

Rules and their stable codes: :data:`RULES`; see docs/vee-billing.md. ``amiflow vee run`` stores the results of a
month (rating.billing_run with ``kind="vee"``).
"""

from rating.local_time import local_start_s
from rating.vee.core import VeeResult, run_vee
from rating.vee.estimate import METHODS
from rating.vee.events import outage_mask
from rating.vee.rules import RULES, Rule, Validation, VeeConfig, VeeInput, rule, validate

__all__ = [
    "METHODS",
    "RULES",
    "Rule",
    "Validation",
    "VeeConfig",
    "VeeInput",
    "VeeResult",
    "local_start_s",
    "outage_mask",
    "rule",
    "run_vee",
    "validate",
]
