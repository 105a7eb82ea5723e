"""The inbound billing API: payments and balance statements posted by the billing system.

Routes (prefix ``/billing/v1``; ``amiflow serve`` mounts :func:`create_router`, :func:`create_app` runs it alone):

- ``POST /payments`` {payment_id, account, amount (decimal string), currency, paid_at}: 201 created,
  200 duplicate (same id, same content: a no-op), 409 conflict (same id, different content), 422 invalid.
- ``POST /balances`` {account, balance, currency, as_of, due_date?}: the same semantics by (account, as_of).
- ``GET /accounts/{account}``: the current balance, due date and the last payments.

Every route needs credentials (:mod:`billing_bridge.api_auth`): ``Authorization: Bearer <AMIFLOW_API_TOKEN>`` (the
operator), a stored API key of the operator or billing role (reads also metrics, and a customer for its own account),
or a request signed with ``AMIFLOW_BILLING_SECRET`` (``X-Amiflow-Signature``, with ``X-Amiflow-Timestamp`` and
``X-Amiflow-Signature-V2`` against replays); authentication is checked before the body is parsed: 401 without, 403
for a role the route does not admit, 503 when nothing is configured (it never runs open). Read routes answer without
credentials only when ``AMIFLOW_API_PUBLIC_READS`` is true. :func:`authenticator` and :class:`BodyLimit` guard
``amiflow serve``'s other routes the same way.

A body is refused before it is parsed when it is larger than ``AMIFLOW_API_MAX_BODY_BYTES`` (413) or repeats a JSON
key (422: which value was meant is unknowable). A payment or statement is refused (422, nothing stored) when a
timestamp lies outside the plausibility window (``AMIFLOW_PLAUSIBLE_PAST_DAYS`` / ``AMIFLOW_PLAUSIBLE_FUTURE_S``), is a
bare number, or when its currency is not the account's. A stored timestamp Python cannot hold (a year-1 date written
before those checks) is shown as ``null`` with an ``error`` naming the row, never a 500.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from amiflow.db import Database, open_database
from amiflow.settings import Settings
from billing_bridge.api_auth import authenticator, document_guards
from billing_bridge.api_keys import Principal, find_key, has_active_key
from billing_bridge.payments import (
    BalanceIn,
    InputRefused,
    PaymentIn,
    Recorded,
    billing_window,
    record_balance,
    record_payment,
    validation_context,
)

__all__ = ["BodyLimit", "authenticator", "create_app", "create_router"]

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

_STATUS = {Recorded.CREATED: 201, Recorded.DUPLICATE: 200, Recorded.CONFLICT: 409}


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` (declared or streamed) is answered 413 before any route
    or authentication reads it; smaller bodies are buffered and handed on unchanged."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", ())).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before its body was complete
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        pending: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay() -> Message:
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"request body larger than {self.max_bytes} bytes (AMIFLOW_API_MAX_BODY_BYTES)"
        await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _invalid(loc: str, msg: str, kind: str) -> HTTPException:
    return HTTPException(422, [{"loc": ["body", loc], "msg": msg, "type": kind}])


async def _parse(request: Request, model: type[M], context: dict[str, Any]) -> M:
    body = await request.body()
    try:
        json.loads(body, object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise _invalid(exc.key, f"key {exc.key!r} appears more than once", "duplicate_key") from None
    except (ValueError, RecursionError):
        pass  # not JSON: pydantic names the problem below
    try:
        return model.model_validate_json(body, context=context)
    except ValidationError as exc:
        detail = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in exc.errors(include_url=False)
        ]
        raise HTTPException(422, detail) from None


_GUARDED: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or wrong credentials"},
    403: {"description": "credentials of a role this route does not admit, or a customer's of another account"},
    503: {"description": "no credentials configured"},
}

# The body is parsed by hand (after authentication), so its schema and answers are documented here for the spec.
_WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "already received with the same content (no-op)"},
    201: {"description": "recorded"},
    401: {"description": "missing or wrong credentials"},
    403: {"description": "credentials of a role this route does not admit"},
    409: {"description": "already received with different content; nothing changed"},
    413: {"description": "body larger than AMIFLOW_API_MAX_BODY_BYTES"},
    422: {"description": "invalid body, implausible timestamp or currency not the account's; nothing changed"},
    503: {"description": "no credentials configured"},
}


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


def _utc(naive: datetime | None) -> str | None:
    return naive.replace(tzinfo=UTC).isoformat() if naive is not None else None


# timestamps selected through this guard arrive as naive UTC, or NULL when Python's datetime cannot hold them
_HOLDABLE = "CASE WHEN {c} >= '0001-01-01 00:00Z' AND {c} < '10000-01-01 00:00Z' THEN {c} AT TIME ZONE 'UTC' END"


def _read_account(conn: Any, account: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT account, currency, balance::text, due_date::text,"
        f" {_HOLDABLE.format(c='balance_as_of')}, balance_as_of::text FROM amiflow.accounts WHERE account = %s",
        (account,),
    ).fetchone()
    if row is None:
        return None
    data: dict[str, Any] = {
        "account": row[0],
        "currency": row[1],
        "balance": row[2],
        "due_date": row[3],
        "balance_as_of": _utc(row[4]),
    }
    if row[4] is None and row[5] is not None:
        data["error"] = f"balance_as_of {row[5]} is outside the years 1-9999; correct amiflow.accounts"
        log.warning("account %s: stored balance_as_of %s cannot be shown", account, row[5])
    payments = []
    for pid, amount, currency, paid_at, raw in conn.execute(
        f"SELECT payment_id, amount::text, currency, {_HOLDABLE.format(c='paid_at')}, paid_at::text"
        " FROM amiflow.payments WHERE account = %s ORDER BY paid_at DESC LIMIT 20",
        (account,),
    ).fetchall():
        item = {"payment_id": pid, "amount": amount, "currency": currency, "paid_at": _utc(paid_at)}
        if paid_at is None:
            item["error"] = f"paid_at {raw} is outside the years 1-9999; correct payment {pid} in amiflow.payments"
            log.warning("payment %s of account %s: stored paid_at %s cannot be shown", pid, account, raw)
        payments.append(item)
    data["payments"] = payments
    return data


def create_router(settings: Settings, database: Callable[[], Database]) -> APIRouter:
    """The API routes; ``database()`` returns the open Database (called per request, so it may be set at startup)."""
    router = APIRouter(prefix="/billing/v1", tags=["billing"])
    write = [Depends(authenticator(settings))]
    window = billing_window(settings)

    def store(fn: Callable[[Any], Recorded]) -> Recorded:
        with database().pool.connection() as conn:
            return fn(conn)

    async def record(fn: Callable[[Any], Recorded]) -> Recorded:
        try:
            return await run_in_threadpool(store, fn)
        except InputRefused as exc:
            raise _invalid(exc.field, str(exc), "refused") from None

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
        dependencies=write,
    )
    async def post_payment(request: Request) -> JSONResponse:
        p = await _parse(request, PaymentIn, validation_context(window))
        result = await record(lambda conn: record_payment(conn, p, "api"))
        return answer(result, "payment_id", p.payment_id)

    @router.post(
        "/balances",
        summary="Post an account balance statement (idempotent by account and as_of)",
        openapi_extra=_json_body(BalanceIn),
        responses=_WRITE_RESPONSES,
        dependencies=write,
    )
    async def post_balance(request: Request) -> JSONResponse:
        b = await _parse(request, BalanceIn, validation_context(window))
        result = await record(lambda conn: record_balance(conn, b, "api"))
        return answer(result, "account", b.account)

    @router.get(
        "/accounts/{account}",
        summary="An account's balance, due date and recent payments",
        responses={**_GUARDED, 404: {"description": "unknown account"}},
        dependencies=[Depends(authenticator(settings, read=True))],
    )
    async def get_account(account: Annotated[str, Path(pattern=r"^[^\x00]*$")]) -> JSONResponse:
        data = await run_in_threadpool(lambda: _with_conn(database(), lambda conn: _read_account(conn, account)))
        if data is None:
            raise HTTPException(404, f"account {account!r} not known")
        return JSONResponse(data)

    return router


def _with_conn(db: Database, fn: Callable[[Any], Any]) -> Any:
    with db.pool.connection() as conn:
        return fn(conn)


def _lookup(db: Database, key: str) -> Principal | None:
    found: Principal | None = _with_conn(db, lambda conn: find_key(conn, key))
    return found


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
    app.state.amiflow_key_lookup = lambda key: _lookup(holder["db"], key)
    app.state.amiflow_keys_exist = lambda: bool(_with_conn(holder["db"], has_active_key))
    app.include_router(create_router(settings, lambda: holder["db"]))
    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes)
    document_guards(app)
    return app
