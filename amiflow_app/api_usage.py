"""The customers' usage API (prefix ``/usage/v1``), mounted into ``amiflow serve``'s HTTP API.

- ``GET /usage/v1/accounts/{account}/meters/{meter}/greenbutton?from=DATE&to=DATE[&format=espi|csv]``: the Green
  Button (ESPI) Atom feed (``application/atom+xml``) or CSV of the meter's local days [from, to);
- ``GET /usage/v1/accounts/{account}/meters/{meter}/insights?period=YYYY-MM``: baseload, peak hours, comparisons
  and the best-tariff advice as JSON.

A customer presents ``Authorization: Bearer <customer token>`` (``amiflow usage token --account A``), which opens
that account only (403 for another's), as does a stored customer key; operators use AMIFLOW_API_TOKEN or an operator
key (the billing and metrics roles get 403), never opened by ``AMIFLOW_API_PUBLIC_READS``: usage is personal data.
404 names an unknown account, a meter not of the account or a meter without intervals in the range; 422 an empty
range (``from`` not before ``to``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from fastapi.responses import JSONResponse
from psycopg_pool import ConnectionPool

from amiflow.errors import ConfigError
from amiflow.settings import Settings
from billing_bridge.api import authenticator
from billing_bridge.api_auth import Guard, Scope
from billing_bridge.customer import export_usage, parse_month, usage_insights
from billing_bridge.customer.usage import UsageNotFound, find_meter

__all__ = ["create_usage_router"]

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or wrong credentials"},
    403: {"description": "a customer token of another account"},
    404: {"description": "unknown account, a meter not of the account, or no intervals in the range"},
    422: {"description": "an empty or malformed range or period"},
    503: {"description": "no credentials configured (AMIFLOW_API_TOKEN)"},
}
_FEED: dict[int | str, dict[str, Any]] = {
    200: {"description": "the export", "content": {"application/atom+xml": {}, "text/csv": {}}}
}


def customer_guard(settings: Settings) -> Guard:
    """A dependency: a customer's credentials of the path's account, else an operator's (billing_bridge.api_auth)."""
    return authenticator(settings, scope=Scope.USAGE)


def _answer(fn: Callable[[], Any]) -> Any:
    """Run ``fn``; the usage errors become 404 (not there) and 422 (bad input) with their one-line message."""
    try:
        return fn()
    except UsageNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except ConfigError as exc:
        raise HTTPException(422, str(exc)) from None


def create_usage_router(settings: Settings, pool: ConnectionPool[Any]) -> APIRouter:
    """The usage routes on ``pool`` (autocommit connections)."""
    router = APIRouter(prefix="/usage/v1", tags=["usage"], dependencies=[Depends(customer_guard(settings))])

    @router.get(
        "/accounts/{account}/meters/{meter}/greenbutton",
        summary="A meter's usage as a Green Button (ESPI) Atom feed or CSV",
        response_class=Response,
        responses={**_FEED, **_ERRORS},
    )
    def greenbutton(
        account: str,
        meter: str,
        start: Annotated[date, Query(alias="from", description="first local day")],
        end: Annotated[date, Query(alias="to", description="the local day after the last one")],
        format: Literal["espi", "csv"] = "espi",
    ) -> Response:
        def run() -> bytes:
            with pool.connection() as conn:
                find_meter(conn, meter, account=account)  # 404 before any check of the range
                return export_usage(conn, meter, start, end, format, account=account)

        data = _answer(run)
        media = "application/atom+xml" if format == "espi" else "text/csv"
        return Response(data, media_type=media)

    @router.get(
        "/accounts/{account}/meters/{meter}/insights",
        summary="Baseload, peak hours, comparisons and the best tariff of a meter's month",
        responses={200: {"description": "the insights (money as decimal strings)"}, **_ERRORS},
    )
    def insights(
        account: str,
        meter: str,
        period: Annotated[str, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM")],
    ) -> JSONResponse:
        def run() -> dict[str, Any]:
            with pool.connection() as conn:
                find_meter(conn, meter, account=account)  # 404 before any check of the period
                return usage_insights(conn, meter, parse_month(period, "period"), account=account).to_json()

        return JSONResponse(_answer(run))

    return router
