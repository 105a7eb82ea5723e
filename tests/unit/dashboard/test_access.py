"""The dashboard's session cookie: signed with the API token, expiring, never the token itself."""

from __future__ import annotations

from starlette.requests import Request

from amiflow.settings import Settings
from amiflow_app.dashboard.access import COOKIE, SESSION_S, Access, same_origin

NOW = 1_800_000_000.0


def _request(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": raw, "query_string": b""})


def test_a_session_is_valid_until_it_expires_and_only_under_its_token() -> None:
    access = Access(Settings(api_token="tok-1"))
    value = access.session(NOW)
    assert "tok-1" not in value
    assert access.session_valid(value, NOW + SESSION_S - 1)
    assert not access.session_valid(value, NOW + SESSION_S)
    assert not Access(Settings(api_token="tok-2")).session_valid(value, NOW)  # a new token ends every session
    expires, _, signature = value.partition(".")
    assert not access.session_valid(f"{int(expires) + 3600}.{signature}", NOW)  # a longer life cannot be forged
    for bad in ("", ".", "abc.def", f"{expires}.", "1" * 40 + ".x"):
        assert not access.session_valid(bad, NOW)


def test_without_a_token_there_is_no_session() -> None:
    access = Access(Settings())
    assert not access.can_log_in and not access.session_valid("1.2", NOW)
    assert not access.allows(_request({}))
    assert Access(Settings(api_public_reads=True)).allows(_request({}))


def test_cookie_or_bearer_allows() -> None:
    access = Access(Settings(api_token="tok"))
    assert access.allows(_request({"Authorization": "Bearer tok"}))
    assert not access.allows(_request({"Authorization": "Bearer tok2"}))
    assert access.allows(_request({"Cookie": f"{COOKIE}={access.session()}"}))
    assert not access.allows(_request({"Cookie": f"{COOKIE}=1.2"}))


def test_same_origin() -> None:
    assert same_origin(_request({"Host": "127.0.0.1:8080"}))  # no Origin: not a browser
    assert same_origin(_request({"Host": "127.0.0.1:8080", "Origin": "http://127.0.0.1:8080"}))
    assert not same_origin(_request({"Host": "127.0.0.1:8080", "Origin": "http://127.0.0.1:9090"}))
    assert not same_origin(_request({"Host": "ops.example", "Origin": "https://evil.example"}))
