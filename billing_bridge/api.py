"""The inbound billing API: payments and balance statements posted by the billing system.

Routes (prefix ``/billing/v1``; ``amiflow serve`` mounts :func:`create_router`, :func:`create_app` runs it alone):

- ``POST /payments`` {payment_id, account, amount (decimal string), currency, paid_at}: 201 created,
  200 duplicate (same id, same content: a no-op), 409 conflict (same id, different content), 422 invalid.
- ``POST /balances`` {account, balance, currency, as_of, due_date?}: the same semantics by (account, as_of).
- ``GET /accounts/{account}``: the current balance, due date and the last payments.

Every route needs ``Authorization: Bearer <AMIFLOW_API_TOKEN>`` or ``X-Amiflow-Signature: sha256=<hex HMAC-SHA256 of
the body with AMIFLOW_BILLING_SECRET>``; authentication is checked before the body is parsed. With neither setting
configured the API answers 503 (it never runs open).
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from amiflow.db import Database, open_database
from amiflow.settings import Settings
from billing_bridge.delivery import verify
from billing_bridge.payments import BalanceIn, PaymentIn, Recorded, record_balance, record_payment

__all__ = ["create_app", "create_router"]

M = TypeVar("M", bound=BaseModel)

_STATUS = {Recorded.CREATED: 201, Recorded.DUPLICATE: 200, Recorded.CONFLICT: 409}


def _authenticator(settings: Settings) -> Callable[[Request], Any]:
    token = settings.api_token.get_secret_value().encode() if settings.api_token else None
    secret = settings.billing_secret.get_secret_value().encode() if settings.billing_secret else None

    async def authenticate(request: Request) -> None:
        if token is None and secret is None:
            raise HTTPException(503, "inbound billing API disabled: set AMIFLOW_API_TOKEN or AMIFLOW_BILLING_SECRET")
        auth = request.headers.get("authorization", "")
        if token is not None and auth[:7].lower() == "bearer " and hmac.compare_digest(auth[7:].encode(), token):
            return
        signature = request.headers.get("x-amiflow-signature")
        if secret is not None and signature and verify(await request.body(), signature, secret):
            return
        raise HTTPException(401, "missing or wrong credentials", headers={"WWW-Authenticate": "Bearer"})

    return authenticate


async def _parse(request: Request, model: type[M]) -> M:
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        detail = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in exc.errors(include_url=False)
        ]
        raise HTTPException(422, detail) from None


# The body is parsed by hand (after authentication), so its schema and answers are documented here for the spec.
_WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "already received with the same content (no-op)"},
    201: {"description": "recorded"},
    401: {"description": "missing or wrong credentials"},
    409: {"description": "already received with different content; nothing changed"},
    422: {"description": "invalid body"},
}


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


def create_router(settings: Settings, database: Callable[[], Database]) -> APIRouter:
    """The API routes; ``database()`` returns the open Database (called per request, so it may be set at startup)."""
    router = APIRouter(prefix="/billing/v1", tags=["billing"], dependencies=[Depends(_authenticator(settings))])

    def store(fn: Callable[[Any], Recorded]) -> Recorded:
        with database().pool.connection() as conn:
            return fn(conn)

    def answer(result: Recorded, what: str, ident: str) -> JSONResponse:
        body: dict[str, str] = {"status": result.value, what: ident}
        if result is Recorded.CONFLICT:
            body["error"] = f"{what} {ident!r} was already received with different content; nothing changed"
        return JSONResponse(body, status_code=_STATUS[result])

    @router.post(
        "/payments",
        summary="Post a payment (idempotent by payment_id)",
        openapi_extra=_json_body(PaymentIn),
        responses=_WRITE_RESPONSES,
    )
    async def post_payment(request: Request) -> JSONResponse:
        p = await _parse(request, PaymentIn)
        result = await run_in_threadpool(store, lambda conn: record_payment(conn, p, "api"))
        return answer(result, "payment_id", p.payment_id)

    @router.post(
        "/balances",
        summary="Post an account balance statement (idempotent by account and as_of)",
        openapi_extra=_json_body(BalanceIn),
        responses=_WRITE_RESPONSES,
    )
    async def post_balance(request: Request) -> JSONResponse:
        b = await _parse(request, BalanceIn)
        result = await run_in_threadpool(store, lambda conn: record_balance(conn, b, "api"))
        return answer(result, "account", b.account)

    @router.get(
        "/accounts/{account}",
        summary="An account's balance, due date and recent payments",
        responses={401: {"description": "missing or wrong credentials"}, 404: {"description": "unknown account"}},
    )
    async def get_account(account: str) -> JSONResponse:
        def read(conn: Any) -> dict[str, Any] | None:
            row = conn.execute(
                "SELECT account, currency, balance::text, due_date::text, balance_as_of FROM amiflow.accounts"
                " WHERE account = %s",
                (account,),
            ).fetchone()
            if row is None:
                return None
            payments = conn.execute(
                "SELECT payment_id, amount::text, currency, paid_at FROM amiflow.payments WHERE account = %s"
                " ORDER BY paid_at DESC LIMIT 20",
                (account,),
            ).fetchall()
            return {
                "account": row[0],
                "currency": row[1],
                "balance": row[2],
                "due_date": row[3],
                "balance_as_of": row[4].isoformat() if row[4] else None,
                "payments": [
                    {"payment_id": p[0], "amount": p[1], "currency": p[2], "paid_at": p[3].isoformat()}
                    for p in payments
                ],
            }

        data = await run_in_threadpool(lambda: _with_conn(database(), read))
        if data is None:
            raise HTTPException(404, f"account {account!r} not known")
        return JSONResponse(data)

    return router


def _with_conn(db: Database, fn: Callable[[Any], Any]) -> Any:
    with db.pool.connection() as conn:
        return fn(conn)


def create_app(settings: Settings, database: Database | None = None) -> FastAPI:
    """A standalone app serving only the billing API; opens (and migrates) the database at startup if not given."""
    holder: dict[str, Database] = {}
    if database is not None:
        holder["db"] = database

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = "db" not in holder
        if owned:
            holder["db"] = await run_in_threadpool(open_database, settings)
        try:
            yield
        finally:
            if owned:
                holder.pop("db").close()

    app = FastAPI(title="amiflow billing API", lifespan=lifespan)
    app.include_router(create_router(settings, lambda: holder["db"]))
    return app
