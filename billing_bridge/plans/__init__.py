"""Installment plans (payment arrangements): an account's overdue balance split into a down payment and dated
installments, payments allocated to them in a stated order, and a plan in good standing that suspends the reminder
ladder and blocks disconnection (policy rule ``installment_plan``). A missed installment past the grace period breaks
the plan: billing is told through the outbox and the ladder resumes. Who may get a plan is data (``terms/*.toml``,
one per rule set)::

    terms = load_plan_terms(ruleset.id)
    plan = create_plan(conn, ruleset, terms, account="ACC-1", installments=3, now=now)   # PlanRefused says why not
    plan_standing(conn, ruleset, plan, today).state                  # good_standing | completed | broken
    review_plans(conn, ruleset, now=now)                             # run by send_reminders before each run

The split, the allocation order and the standing rules are pure (:mod:`billing_bridge.plans.schedule`); see
docs/collections.md.
"""

from billing_bridge.plans.review import PlanChange, review_plans
from billing_bridge.plans.schedule import Installment, ItemStatus, Standing, add_months, split_balance, standing
from billing_bridge.plans.store import (
    Plan,
    create_plan,
    get_plan,
    list_plans,
    plan_standing,
    plans_in_good_standing,
    record_event,
)
from billing_bridge.plans.terms import PlanRefused, PlanRequest, PlanTerms, check_eligibility, load_plan_terms

__all__ = [
    "Installment",
    "ItemStatus",
    "Plan",
    "PlanChange",
    "PlanRefused",
    "PlanRequest",
    "PlanTerms",
    "Standing",
    "add_months",
    "check_eligibility",
    "create_plan",
    "get_plan",
    "list_plans",
    "load_plan_terms",
    "plan_standing",
    "plans_in_good_standing",
    "record_event",
    "review_plans",
    "split_balance",
    "standing",
]
