"""The installment plan routes of ``amiflow serve``'s HTTP API (prefix ``/billing/v1/plans``); the work is
:mod:`billing_bridge.plans`, under the rule set of ``AMIFLOW_DISCONNECT_RULESET`` and its bundled plan terms.

- ``POST /billing/v1/plans`` {account, installments, down_payment? (decimal string), start? (first due date)}:
  201 the plan; 422 refused, with ``reason`` (prepaid, nothing_overdue, below_minimum, installments,
  down_payment_small, down_payment_large, start, broken_recently) and the sentence saying why; 409 ``plan_active``.
- ``GET /billing/v1/plans?account=&state=``: the plans, oldest first.
- ``GET /billing/v1/plans/{plan_id}``: one plan with its standing today (what each installment was paid); 404.

The write route takes the billing API's credentials (bearer token or signature); the reads take the same unless
``AMIFLOW_API_PUBLIC_READS``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.responses import JSONResponse
from psycopg_pool import ConnectionPool
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from amiflow.settings import Settings
from billing_bridge.api import authenticator
from billing_bridge.plans import PlanRefused, create_plan, get_plan, list_plans, load_plan_terms, plan_standing
from billing_bridge.policy import load_ruleset

__all__ = ["PlanIn", "create_plans_router"]

_GUARDED: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or wrong credentials"},
    403: {"description": "a role this route does not admit, or a customer's credentials of another account"},
    503: {"description": "no credentials configured (AMIFLOW_API_TOKEN)"},
}


class PlanIn(BaseModel):
    """A plan asked for by billing or an operator; money as a decimal string."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    account: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
    installments: int = Field(ge=1, le=120)
    down_payment: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,12}(\.[0-9]{1,2})?$")] | None = None
    start: date | None = Field(None, description="due date of the first installment (default: the terms')")


def create_plans_router(settings: Settings, pool: ConnectionPool[Any]) -> APIRouter:
    """The plan routes on ``pool`` (autocommit connections)."""
    router = APIRouter(prefix="/billing/v1/plans", tags=["collections"])
    writes = [Depends(authenticator(settings))]
    reads = [Depends(authenticator(settings, read=True))]
    ruleset = load_ruleset(settings.disconnect_ruleset)

    @router.post(
        "",
        status_code=201,
        dependencies=writes,
        summary="Split an account's overdue balance into a down payment and dated installments",
        responses={**_GUARDED, 409: {"description": "a plan is already running"}, 422: {"description": "refused"}},
    )
    def create(body: PlanIn) -> JSONResponse:
        terms = load_plan_terms(ruleset.id)
        down = Decimal(body.down_payment) if body.down_payment is not None else None
        try:
            with pool.connection() as conn:
                plan = create_plan(conn, ruleset, terms, account=body.account, installments=body.installments,
                                   down_payment=down, first_due=body.start, now=datetime.now(UTC))  # fmt: skip
        except PlanRefused as exc:
            status = 409 if exc.reason == "plan_active" else 422
            return JSONResponse({"detail": str(exc), "reason": exc.reason}, status_code=status)
        return JSONResponse(plan.as_json(), status_code=201)

    @router.get("", dependencies=reads, summary="The installment plans, oldest first", responses=_GUARDED)
    def plans(
        account: str | None = None,
        state: Literal["active", "completed", "broken", "cancelled"] | None = None,
        limit: int = Query(1000, ge=1, le=100_000),
    ) -> JSONResponse:
        with pool.connection() as conn:
            found = list_plans(conn, account=account, state=state)
        return JSONResponse([p.as_json() for p in found[:limit]])

    @router.get(
        "/{plan_id}",
        dependencies=reads,
        summary="One plan with its standing today",
        responses={**_GUARDED, 404: {"description": "no such plan"}},
    )
    def plan(plan_id: Annotated[int, Path(ge=1, le=2**62)]) -> JSONResponse:
        today = datetime.now(UTC).astimezone(ZoneInfo(ruleset.timezone)).date()
        with pool.connection() as conn:
            found = get_plan(conn, plan_id)
            if found is None:
                raise HTTPException(404, f"plan {plan_id} does not exist")
            s = plan_standing(conn, ruleset, found, today)
        return JSONResponse(found.as_json() | {"standing": s.as_json()})

    return router
