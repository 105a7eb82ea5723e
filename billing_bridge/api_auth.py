"""Who may call which route of the HTTP API: credentials to a :class:`~billing_bridge.api_keys.Principal`, then the
role against the route's scope.

Credentials, in the order tried:

- ``Authorization: Bearer <AMIFLOW_API_TOKEN>``: the operator (CONTRACT.md's token keeps working);
- ``Authorization: Bearer cu1....``: a customer token (:mod:`billing_bridge.customer.access`), one account;
- ``Authorization: Bearer amk_...``: a stored API key (:mod:`billing_bridge.api_keys`), looked up through the
  ``amiflow_key_lookup`` callable the app puts on ``app.state``;
- ``X-Amiflow-Signature`` (and ``X-Amiflow-Timestamp`` / ``X-Amiflow-Signature-V2``) under
  ``AMIFLOW_BILLING_SECRET``: the billing system (:class:`~billing_bridge.signatures.SignatureVerifier`, one per app,
  so a replay inside the window is refused; body-only signatures only while ``AMIFLOW_SIGNATURE_REQUIRE_TIMESTAMP``
  is off).

Scopes: ``WRITE`` (payments, balances, plans: operator, billing), ``READ`` (meters, readings, bills, accounts, plans:
operator, billing, metrics; a customer for its own account, named by the path's or query's ``account``), ``USAGE``
(a customer's usage data: operator, the customer itself) and ``METRICS`` (``/metrics`` when guarded: operator,
metrics). No credentials: 401, or 503 when none are configured, no stored key is active and none were presented
(the API never runs open);
credentials of a role the scope does not admit: 403. ``AMIFLOW_API_PUBLIC_READS`` opens ``READ`` (only) to everyone.
"""

from __future__ import annotations

import enum
import hmac
import logging
import time
from collections.abc import Callable
from typing import Any

import psycopg
from fastapi import FastAPI, HTTPException, Request
from fastapi.routing import APIRoute
from psycopg_pool import PoolTimeout
from starlette.concurrency import run_in_threadpool

from amiflow.settings import Settings
from billing_bridge.api_keys import KEY_PREFIX, Principal, Role
from billing_bridge.customer.access import token_account
from billing_bridge.signatures import SignatureVerifier

__all__ = ["Guard", "KeyLookup", "Scope", "authenticator", "document_guards", "permitted", "principal_of"]

log = logging.getLogger(__name__)

KeyLookup = Callable[[str], Principal | None]


class Scope(enum.Enum):
    """What a route does, for the role check."""

    READ = "read"
    WRITE = "write"
    USAGE = "usage"
    METRICS = "metrics"


_ADMITTED: dict[Scope, frozenset[Role]] = {
    Scope.WRITE: frozenset({Role.OPERATOR, Role.BILLING}),
    Scope.READ: frozenset({Role.OPERATOR, Role.BILLING, Role.METRICS, Role.CUSTOMER}),
    Scope.USAGE: frozenset({Role.OPERATOR, Role.CUSTOMER}),
    Scope.METRICS: frozenset({Role.OPERATOR, Role.METRICS}),
}


def permitted(principal: Principal, scope: Scope, accounts: list[str]) -> str | None:
    """None when ``principal`` may use a route of ``scope`` naming ``accounts``; else why not (for the 403)."""
    if principal.role not in _ADMITTED[scope]:
        return f"the {principal.role.value} role may not use this route"
    if principal.role is Role.CUSTOMER:
        if not accounts:
            return "a customer's credentials open only routes that name its account (e.g. ?account=...)"
        if any(a != principal.account for a in accounts):
            return "this customer token opens another account's data"
    return None


def _verifier(request: Request, settings: Settings, secret: bytes) -> SignatureVerifier:
    state = request.app.state
    verifier: SignatureVerifier | None = getattr(state, "amiflow_signatures", None)
    if verifier is None:
        verifier = SignatureVerifier(
            secret,
            max_age_s=settings.signature_max_age_s,
            require_timestamp=settings.signature_require_timestamp,
            name="API request signature",
        )
        state.amiflow_signatures = verifier
    return verifier


async def principal_of(request: Request, settings: Settings) -> Principal | None:
    """The principal of ``request``'s credentials, or None."""
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        presented = auth[7:].strip()
        token = settings.api_token.get_secret_value() if settings.api_token else None
        if token is not None and hmac.compare_digest(presented.encode(), token.encode()):
            return Principal(Role.OPERATOR, "AMIFLOW_API_TOKEN")
        if presented.startswith("cu1."):
            account = token_account(settings, presented)
            if account is not None:
                return Principal(Role.CUSTOMER, f"customer token of {account}", account)
        lookup: KeyLookup | None = getattr(request.app.state, "amiflow_key_lookup", None)
        if presented.startswith(KEY_PREFIX) and lookup is not None:
            try:
                found = await run_in_threadpool(lookup, presented)
            except (psycopg.OperationalError, PoolTimeout) as exc:
                log.warning("cannot check an API key: %s", " ".join(str(exc).split())[:200])
                raise HTTPException(503, "cannot check the API key: the database is unavailable") from None
            if found is not None:
                return found
    if settings.billing_secret is not None and request.headers.get("x-amiflow-signature") is not None:
        secret = settings.billing_secret.get_secret_value().encode()
        body = await request.body()
        where = f"{request.method} {request.url.path}"
        key = request.headers.get("idempotency-key", "")
        if _verifier(request, settings, secret).check(body, request.headers, key=key, where=where).accepted:
            return Principal(Role.BILLING, "AMIFLOW_BILLING_SECRET signature")
    return None


async def _keys_exist(request: Request) -> bool:
    """Whether stored keys exist (``amiflow_keys_exist`` on ``app.state``), remembered for 10 s; False when it cannot
    be told (no store, or the database is away): then the API is closed, 503."""
    state = request.app.state
    probe: Callable[[], bool] | None = getattr(state, "amiflow_keys_exist", None)
    if probe is None:
        return False
    cached: tuple[float, bool] | None = getattr(state, "amiflow_keys_exist_at", None)
    now = time.monotonic()
    if cached is not None and now - cached[0] < 10.0:
        return cached[1]
    try:
        found = bool(await run_in_threadpool(probe))
    except Exception as exc:  # an unreachable store: report the API as closed, never crash the guard
        log.debug("cannot tell whether API keys exist: %s", exc)
        found = False
    state.amiflow_keys_exist_at = (now, found)
    return found


def _accounts(request: Request) -> list[str]:
    found = list(request.query_params.getlist("account"))
    if "account" in request.path_params:
        found.append(str(request.path_params["account"]))
    return found


_ANSWERS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or wrong credentials"},
    403: {"description": "credentials of a role this route does not admit, or a customer's of another account"},
    503: {"description": "no credentials configured (AMIFLOW_API_TOKEN, AMIFLOW_BILLING_SECRET or an API key)"},
}


class Guard:
    """The FastAPI dependency of one scope (see the module docstring); leaves the principal on
    ``request.state.principal`` for the route."""

    def __init__(self, settings: Settings, scope: Scope) -> None:
        self.settings = settings
        self.scope = scope
        self._public = scope is Scope.READ and settings.api_public_reads
        self._configured = settings.api_token is not None or settings.billing_secret is not None
        closed = "API closed: set AMIFLOW_API_TOKEN or AMIFLOW_BILLING_SECRET, or present an API key (amiflow api-keys)"
        if scope is Scope.READ:
            closed += " (or AMIFLOW_API_PUBLIC_READS=true for the read routes)"
        self._closed = closed

    async def __call__(self, request: Request) -> None:
        if self._public:
            return
        principal = await principal_of(request, self.settings)
        if principal is None:
            auth = request.headers.get("authorization", "")
            presented = auth[:7].lower() == "bearer " and auth[7:].strip().startswith((KEY_PREFIX, "cu1."))
            if not self._configured and not presented and not await _keys_exist(request):
                raise HTTPException(503, self._closed)
            raise HTTPException(401, "missing or wrong credentials", headers={"WWW-Authenticate": "Bearer"})
        refused = permitted(principal, self.scope, _accounts(request))
        if refused is not None:
            log.info("%s %s refused for %s: %s", request.method, request.url.path, principal.name, refused)
            raise HTTPException(403, refused)
        request.state.principal = principal


def authenticator(settings: Settings, *, read: bool = False, scope: Scope | None = None) -> Guard:
    """The guard of a route of ``scope`` (``WRITE`` by default, ``READ`` with ``read``)."""
    return Guard(settings, scope if scope is not None else (Scope.READ if read else Scope.WRITE))


def document_guards(app: FastAPI) -> None:
    """Add the guard's answers (401, 403, 503) to the OpenAPI responses of every guarded route that does not name
    them itself, so the spec holds for every router that uses :func:`authenticator`."""
    for route in app.routes:
        if isinstance(route, APIRoute) and any(isinstance(d.dependency, Guard) for d in route.dependencies):
            for status, answer in _ANSWERS.items():
                if status not in route.responses and str(status) not in route.responses:
                    route.responses[status] = answer
