"""The dashboard's routes (prefix ``/dashboard``), mounted into ``amiflow serve``'s HTTP API.

- ``GET /dashboard``: the page (the login form, 401, without a session; 503 when no credentials are configured);
- ``POST /dashboard/login`` (form field ``token``) sets the session cookie, ``POST /dashboard/logout`` clears it;
- ``GET /dashboard/figures``: the figures now as JSON (:class:`~amiflow_app.dashboard.model.Figures`);
- ``WS /dashboard/events``: a WebSocket that sends the figures (a ``Figures`` object, ``"type": "figures"``) every
  refresh, or ``{"type": "error", "detail": ...}`` while they cannot be gathered. It closes with 4401 without valid
  credentials and is refused (403) when a browser opens it from another site's page.

A WebSocket rather than server-sent events because uvicorn closes WebSockets when the server stops (code 1012)
but waits for a streaming response to finish, which an event stream never does: ``amiflow serve`` would then take
its whole stop bound to exit with a dashboard open. The page reconnects by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any
from urllib.parse import parse_qs

import anyio
from fastapi import APIRouter, Depends, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from psycopg_pool import ConnectionPool
from starlette.concurrency import run_in_threadpool

from amiflow.settings import Settings
from amiflow_app.dashboard.access import COOKIE, SESSION_S, Access, same_origin
from amiflow_app.dashboard.live import FigureHub
from amiflow_app.dashboard.model import Figures
from amiflow_app.dashboard.operations import FigureOptions
from amiflow_app.dashboard.page import STYLE, login_page, page
from amiflow_app.dashboard.script import SCRIPT
from amiflow_app.dashboard.source import FigureSource
from billing_bridge.api import authenticator
from billing_bridge.policy import load_ruleset

__all__ = ["create_dashboard_router"]

log = logging.getLogger(__name__)

_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self';"
    " img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # not no-referrer: Chromium then sends "Origin: null" with the login form
}
_CLOSED = "The dashboard is closed: set AMIFLOW_API_TOKEN (or AMIFLOW_API_PUBLIC_READS=true) and restart."


def _html(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status_code=status, headers=_HEADERS)


def create_dashboard_router(
    settings: Settings, pool: ConnectionPool[Any], *, refresh_s: float = 2.0, options: FigureOptions | None = None
) -> APIRouter:
    """The dashboard on ``pool`` (autocommit connections); the figures are gathered every ``refresh_s`` seconds while
    a page is open (once for all of them)."""
    access = Access(settings)
    source = FigureSource(pool, load_ruleset(settings.disconnect_ruleset), options)
    hub = FigureHub(lambda: source.gather().model_dump(mode="json"), every_s=refresh_s)
    operator = authenticator(settings, read=True)
    router = APIRouter(prefix="/dashboard", tags=["dashboard"])

    async def guard(request: Request) -> None:
        if not access.session_valid(request.cookies.get(COOKIE)):
            await operator(request)

    @router.get("", include_in_schema=False)
    def dashboard(request: Request) -> HTMLResponse:
        if access.allows(request):
            return _html(page(logout=not access.public))
        if not access.can_log_in:
            return _html(login_page(_CLOSED, form=False), 503)
        return _html(login_page(), 401)

    @router.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        if not same_origin(request):
            return _html(login_page("This login form was sent from another site: refused."), 403)
        if not access.can_log_in:
            return _html(login_page(_CLOSED, form=False), 503)
        fields = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=8)
        if not access.token_matches(fields.get("token", [""])[0]):
            log.info("dashboard: a login with a wrong token from %s", request.client.host if request.client else "?")
            return _html(login_page("That is not the API token (AMIFLOW_API_TOKEN). Try again."), 401)
        answer = RedirectResponse("/dashboard", status_code=303, headers=_HEADERS)
        secure = request.url.scheme == "https"
        answer.set_cookie(COOKIE, access.session(), max_age=SESSION_S, path="/dashboard", secure=secure,
                          httponly=True, samesite="strict")  # fmt: skip
        return answer

    @router.post("/logout", include_in_schema=False)
    def logout() -> Response:
        answer = RedirectResponse("/dashboard", status_code=303, headers=_HEADERS)
        answer.delete_cookie(COOKIE, path="/dashboard", httponly=True, samesite="strict")
        return answer

    @router.get("/dashboard.js", include_in_schema=False)
    def script() -> Response:
        return Response(SCRIPT, media_type="text/javascript", headers={"Cache-Control": "no-cache"})

    @router.get("/dashboard.css", include_in_schema=False)
    def style() -> Response:
        return Response(STYLE, media_type="text/css", headers={"Cache-Control": "no-cache"})

    @router.get(
        "/figures",
        response_model=Figures,
        dependencies=[Depends(guard)],
        summary="The operations dashboard's figures now",
        responses={
            401: {"description": "missing or wrong credentials"},
            403: {"description": "a role the read routes do not admit (a customer's credentials)"},
            503: {"description": "no credentials configured (AMIFLOW_API_TOKEN) and reads not public"},
        },
    )
    async def figures() -> Figures:
        return await run_in_threadpool(source.gather)

    @router.websocket("/events")
    async def events(websocket: WebSocket) -> None:
        if not same_origin(websocket):
            await websocket.close(code=1008)  # before the handshake: the browser gets a 403
            return
        await websocket.accept()
        if not access.allows(websocket):
            await websocket.close(code=4401, reason="log in at /dashboard")
            return
        async with hub.watch() as queue:
            await _pump(websocket, queue)

    return router


async def _pump(websocket: WebSocket, queue: asyncio.Queue[dict[str, Any]]) -> None:
    """Send each message from ``queue`` until the page goes away or the server closes the socket."""
    async with anyio.create_task_group() as group:

        async def send() -> None:
            with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):  # the socket is gone
                while True:
                    await websocket.send_text(json.dumps(await queue.get()))
            group.cancel_scope.cancel()

        async def receive() -> None:  # the page sends nothing; this notices at once that it went away
            with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
                while (await websocket.receive())["type"] != "websocket.disconnect":
                    pass
            group.cancel_scope.cancel()

        group.start_soon(send)
        group.start_soon(receive)
