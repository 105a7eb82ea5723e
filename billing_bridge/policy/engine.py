"""The disconnect policy engine: a table of rules, each a pure function of (rule set, case, conditions).

No I/O and no clock: ``now``, temperatures, holidays and recent disconnect counts come in :class:`Conditions`. Every
rule is evaluated (never short-circuited) so a decision lists all the reasons that block it; the disconnect is
allowed only when no rule blocks. Rule ids are stable: they are stored with each decision and sent to billing with a
``disconnect_blocked`` notice.

| rule | blocks when |
|---|---|
| debt_threshold | the overdue amount is below the rule set's minimum |
| days_past_due | the debt is fewer days past due than the minimum |
| open_dispute | the customer disputes the bill (when the rule set says a dispute blocks) |
| payment_plan | a payment plan is in good standing |
| installment_plan | an amiflow installment plan (billing_bridge.plans) is in good standing |
| notice_ladder | a required notice was not sent for this debt |
| notice_period | the disconnect_scheduled notice (prepaid: the zero balance) is younger than the notice period |
| protected_customer | the account is in a protected category (life support, medical, ...) |
| weekend | the local weekday is not an allowed one |
| public_holiday | today (local) is a public holiday |
| day_before_holiday | tomorrow (local) is a public holiday |
| outside_hours | the local time is outside the allowed hours |
| blackout_period | today falls in a configured blackout period |
| weather_freeze / weather_heat | the forecast minimum/maximum crosses the threshold |
| weather_unknown | no forecast, and the rule set requires one |
| estimated_bill | the bill behind the debt is mainly estimated |
| rate_limit_hour / rate_limit_feeder | the disconnects of the last hour (all / this feeder) reached the limit |
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from billing_bridge.policy.model import Conditions, Decision, DisconnectCase, RuleResult, RuleSet

__all__ = ["NOT_YET_RULES", "RULES", "evaluate"]

#: Rules that only say "not yet" for a debt on its way to disconnection (no notice goes out for them). Any other
#: blocking rule is a protection, calendar, weather or rate rule: the disconnect is *blocked*, and billing is told.
NOT_YET_RULES = frozenset({"debt_threshold", "days_past_due", "notice_ladder", "notice_period"})

Rule = Callable[[RuleSet, DisconnectCase, Conditions], RuleResult]
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _local(rs: RuleSet, now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("the policy needs an aware 'now' (UTC or with an offset)")
    return now.astimezone(ZoneInfo(rs.timezone))


def _debt_threshold(rs: RuleSet, c: DisconnectCase, k: Conditions) -> RuleResult:
    if c.prepaid:
        # Prepaid: the trigger is a balance at or below zero (overdue_amount = -balance), not a minimum debt.
        return RuleResult("debt_threshold", c.overdue_amount < 0, f"prepaid balance {-c.overdue_amount}")
    low = c.overdue_amount < rs.min_debt
    return RuleResult("debt_threshold", low, f"overdue {c.overdue_amount} {rs.currency}, minimum {rs.min_debt}")


def _days_past_due(rs: RuleSet, c: DisconnectCase, k: Conditions) -> RuleResult:
    if c.prepaid:
        return RuleResult("days_past_due", False, "prepaid: the zero balance is the trigger")
    few = c.days_past_due < rs.min_days_past_due
    return RuleResult("days_past_due", few, f"{c.days_past_due} days past due, minimum {rs.min_days_past_due}")


def _open_dispute(rs: RuleSet, c: DisconnectCase, k: Conditions) -> RuleResult:
    blocks = rs.dispute_blocks and c.open_dispute
    return RuleResult("open_dispute", blocks, "open dispute" if c.open_dispute else "no open dispute")


def _payment_plan(rs: RuleSet, c: DisconnectCase, k: Conditions) -> RuleResult:
    blocks = rs.payment_plan_blocks and c.payment_plan == "good_standing"
    return RuleResult("payment_plan", blocks, f"payment plan: {c.payment_plan}")


def _installment_plan(rs: RuleSet, c: DisconnectCase, k: Conditions) -> RuleResult:
    plan = c.installment_plan
    blocks = rs.payment_plan_blocks and plan is not None
    detail = f"installment plan {plan} in good standing" if plan else "no installment plan in good standing"
    return RuleResult("installment_plan", blocks, detail)


def _required(rs: RuleSet, c: DisconnectCase) -> tuple[str, ...]:
    return rs.prepaid_required_notices if c.prepaid else rs.required_notices


def _notice_ladder(rs: RuleSet, c: DisconnectCase, k: Conditions) -> RuleResult:
    missing = [t for t in _required(rs, c) if t not in c.notices_sent or c.notices_sent[t] > k.now]
    detail = f"missing notices: {', '.join(missing)}" if missing else "all required notices sent"
    return RuleResult("notice_ladder", bool(missing), detail)


def _notice_period(rs: RuleSet, c: DisconnectCase, k: Conditions) -> RuleResult:
    if c.prepaid:
        period = timedelta(hours=rs.prepaid_notice_period_hours)
        start, what = c.zero_since, "balance at zero since"
    else:
        period = timedelta(days=rs.notice_period_days)
        start, what = c.notices_sent.get("disconnect_scheduled"), "disconnect_scheduled sent"
    if start is None:
        return RuleResult("notice_period", True, f"notice period of {period} not started")
    blocks = k.now < start + period
    return RuleResult("notice_period", blocks, f"{what} {start.isoformat()}, period {period}")


def _protected(rs: RuleSet, c: DisconnectCase, k: Conditions) -> RuleResult:
    hit = sorted(c.protected & frozenset(rs.protected_categories))
    return RuleResult("protected_customer", bool(hit), f"protected: {', '.join(hit)}" if hit else "not protected")


def _weekend(rs: RuleSet, c: DisconnectCase, k: Conditions) -> RuleResult:
    wd = _local(rs, k.now).weekday()
    return RuleResult("weekend", wd not in rs.allowed_weekdays, f"local weekday {_DAYS[wd]}")


def _holiday(rs: RuleSet, c: DisconnectCase, k: Conditions) -> RuleResult:
    today = _local(rs, k.now).date()
    blocks = rs.block_holidays and today in k.holidays
    return RuleResult("public_holiday", blocks, f"{today} {'is' if today in k.holidays else 'is not'} a holiday")


def _day_before_holiday(rs: RuleSet, c: DisconnectCase, k: Conditions) -> RuleResult:
    tomorrow = _local(rs, k.now).date() + timedelta(days=1)
    hit = tomorrow in k.holidays
    blocks = rs.block_day_before_holiday and hit
    return RuleResult("day_before_holiday", blocks, f"tomorrow {tomorrow} {'is' if hit else 'is not'} a holiday")


def _hours(rs: RuleSet, c: DisconnectCase, k: Conditions) -> RuleResult:
    t = _local(rs, k.now).time().replace(tzinfo=None)
    start, end = rs.hours
    inside = start <= t < end
    return RuleResult("outside_hours", not inside, f"local time {t:%H:%M}, allowed {start:%H:%M}-{end:%H:%M}")


def _blackout(rs: RuleSet, c: DisconnectCase, k: Conditions) -> RuleResult:
    today = _local(rs, k.now).date()
    hit = [b.name for b in rs.blackouts if b.covers(today)]
    return RuleResult("blackout_period", bool(hit), f"blackout: {', '.join(hit)}" if hit else "no blackout")


def _freeze(rs: RuleSet, c: DisconnectCase, k: Conditions) -> RuleResult:
    t = k.forecast_min_c
    blocks = rs.freeze_below_c is not None and t is not None and t < rs.freeze_below_c
    return RuleResult("weather_freeze", blocks, f"forecast minimum {t} C, threshold {rs.freeze_below_c}")


def _heat(rs: RuleSet, c: DisconnectCase, k: Conditions) -> RuleResult:
    t = k.forecast_max_c
    blocks = rs.heat_above_c is not None and t is not None and t > rs.heat_above_c
    return RuleResult("weather_heat", blocks, f"forecast maximum {t} C, threshold {rs.heat_above_c}")


def _weather_unknown(rs: RuleSet, c: DisconnectCase, k: Conditions) -> RuleResult:
    unknown = (rs.freeze_below_c is not None and k.forecast_min_c is None) or (
        rs.heat_above_c is not None and k.forecast_max_c is None
    )
    blocks = rs.weather_required and unknown
    return RuleResult("weather_unknown", blocks, "no forecast" if unknown else "forecast known")


def _estimated(rs: RuleSet, c: DisconnectCase, k: Conditions) -> RuleResult:
    limit = rs.max_estimated_share
    blocks = limit is not None and not c.prepaid and c.estimated_share > limit
    return RuleResult("estimated_bill", blocks, f"estimated share {c.estimated_share:.3f}, maximum {limit}")


def _rate_hour(rs: RuleSet, c: DisconnectCase, k: Conditions) -> RuleResult:
    limit = rs.max_per_hour
    blocks = limit is not None and k.disconnects_last_hour >= limit
    return RuleResult("rate_limit_hour", blocks, f"{k.disconnects_last_hour} in the last hour, limit {limit}")


def _rate_feeder(rs: RuleSet, c: DisconnectCase, k: Conditions) -> RuleResult:
    limit = rs.max_per_feeder_per_hour
    n = k.feeder_disconnects_last_hour
    blocks = limit is not None and n >= limit
    return RuleResult("rate_limit_feeder", blocks, f"feeder {c.feeder}: {n} in the last hour, limit {limit}")


#: The rule table, in the order rules are reported.
RULES: tuple[Rule, ...] = (
    _debt_threshold,
    _days_past_due,
    _open_dispute,
    _payment_plan,
    _installment_plan,
    _notice_ladder,
    _notice_period,
    _protected,
    _weekend,
    _holiday,
    _day_before_holiday,
    _hours,
    _blackout,
    _freeze,
    _heat,
    _weather_unknown,
    _estimated,
    _rate_hour,
    _rate_feeder,
)


def evaluate(ruleset: RuleSet, case: DisconnectCase, conditions: Conditions) -> Decision:
    """Decide whether ``case`` may be disconnected now under ``ruleset``: every rule is checked and recorded.

    Raises ValueError when ``conditions.now`` is naive (a policy decision must not guess the time zone).
    """
    _local(ruleset, conditions.now)
    results = tuple(rule(ruleset, case, conditions) for rule in RULES)
    return Decision(
        allowed=not any(r.blocks for r in results),
        ruleset_id=ruleset.id,
        ruleset_version=ruleset.version,
        results=results,
    )
