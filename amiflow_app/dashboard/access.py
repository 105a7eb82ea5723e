"""Who may see the dashboard: the operators, with the credentials of the API's read routes.

A browser cannot put ``Authorization: Bearer`` on a page load or on a WebSocket, so the page has a login form: the
operator types ``AMIFLOW_API_TOKEN`` once and gets a session cookie (``amiflow_dashboard``: HttpOnly,
SameSite=Strict, Path=/dashboard, Secure over HTTPS, 12 h). The cookie holds an expiry time and an HMAC-SHA256 of it
keyed with the token, never the token itself: it opens the dashboard only (not the API), and changing the token
ends every session. No token ever travels in a URL (they end up in logs and browser history).

Scripts can skip the cookie and send ``Authorization: Bearer <AMIFLOW_API_TOKEN>`` (or a signature, on HTTP routes)
to ``/dashboard/figures`` and ``/dashboard/events``. With ``AMIFLOW_API_PUBLIC_READS=true`` the dashboard is open
like the other read routes.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

from amiflow.settings import Settings

__all__ = ["COOKIE", "SESSION_S", "Access", "same_origin"]

COOKIE = "amiflow_dashboard"
SESSION_S = 12 * 3600
_CONTEXT = b"amiflow-dashboard-session:"


class Access:
    """The dashboard's credential checks for one set of settings."""

    def __init__(self, settings: Settings) -> None:
        self._token = settings.api_token.get_secret_value().encode() if settings.api_token else None
        self.public = settings.api_public_reads
        #: a login form makes sense only with a token to type
        self.can_log_in = self._token is not None

    def token_matches(self, candidate: str) -> bool:
        return self._token is not None and hmac.compare_digest(candidate.encode(), self._token)

    def session(self, now: float | None = None) -> str:
        """A new session cookie value (requires a token)."""
        if self._token is None:
            raise RuntimeError("no AMIFLOW_API_TOKEN: the dashboard has no login")
        expires = int((now if now is not None else time.time()) + SESSION_S)
        return f"{expires}.{self._sign(expires)}"

    def session_valid(self, value: str | None, now: float | None = None) -> bool:
        if self._token is None or not value:
            return False
        expires, _, signature = value.partition(".")
        if not expires.isdigit() or len(expires) > 12:
            return False
        if int(expires) <= (now if now is not None else time.time()):
            return False
        return hmac.compare_digest(signature, self._sign(int(expires)))

    def bearer_valid(self, conn: HTTPConnection) -> bool:
        auth = conn.headers.get("authorization", "")
        return auth[:7].lower() == "bearer " and self.token_matches(auth[7:])

    def allows(self, conn: HTTPConnection) -> bool:
        """Public reads, a valid session cookie or the bearer token."""
        return self.public or self.session_valid(conn.cookies.get(COOKIE)) or self.bearer_valid(conn)

    def _sign(self, expires: int) -> str:
        assert self._token is not None
        return hmac.new(self._token, _CONTEXT + str(expires).encode(), hashlib.sha256).hexdigest()


def same_origin(conn: HTTPConnection) -> bool:
    """False when a browser says the request comes from another site's page (a WebSocket is not covered by CORS:
    without this check any page could open one with the operator's cookie). No Origin header: not a browser."""
    origin = conn.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc.lower() == conn.headers.get("host", "").lower()
