"""Pure parts of the access control: the role matrix, the timestamped signature's message, key digests, and the
Mosquitto password hash (no network, no database)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import psycopg
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from amiflow.settings import Settings
from amiflow_app.broker_credentials import check_password, fleet_credentials, hash_password
from billing_bridge.api_auth import Scope, authenticator, permitted
from billing_bridge.api_keys import KEY_PREFIX, Principal, Role, key_digest, new_key
from billing_bridge.delivery import sign_v2, signature_headers
from billing_bridge.signatures import SignatureCheck, SignatureVerifier

SECRET = b"s3cret"
OPERATOR, BILLING = Principal(Role.OPERATOR, "op"), Principal(Role.BILLING, "bill")
METRICS, CUSTOMER = Principal(Role.METRICS, "prom"), Principal(Role.CUSTOMER, "c", "ACC1")


@pytest.mark.parametrize(
    ("principal", "scope", "accounts", "allowed"),
    [
        (OPERATOR, Scope.WRITE, [], True),
        (BILLING, Scope.WRITE, [], True),
        (METRICS, Scope.WRITE, [], False),
        (CUSTOMER, Scope.WRITE, ["ACC1"], False),
        (METRICS, Scope.READ, [], True),
        (CUSTOMER, Scope.READ, [], False),
        (CUSTOMER, Scope.READ, ["ACC1"], True),
        (CUSTOMER, Scope.READ, ["ACC1", "ACC2"], False),
        (CUSTOMER, Scope.USAGE, ["ACC2"], False),
        (CUSTOMER, Scope.USAGE, ["ACC1"], True),
        (BILLING, Scope.USAGE, ["ACC1"], False),
        (METRICS, Scope.METRICS, [], True),
        (BILLING, Scope.METRICS, [], False),
        (OPERATOR, Scope.METRICS, [], True),
    ],
)
def test_the_role_matrix(principal: Principal, scope: Scope, accounts: list[str], allowed: bool) -> None:
    assert (permitted(principal, scope, accounts) is None) is allowed


def test_the_timestamped_signature_covers_timestamp_nonce_key_and_body() -> None:
    body = b'{"total":"1.00"}'
    expected = hmac.new(SECRET, b"1800000000.n0nce123.bill-B1.{" + body[1:], hashlib.sha256).hexdigest()
    assert sign_v2(body, SECRET, "1800000000", "n0nce123", "bill-B1") == f"sha256={expected}"
    headers = signature_headers(body, SECRET, 1_800_000_000.9, "n0nce123", "bill-B1")
    assert headers["X-Amiflow-Timestamp"] == "1800000000" and headers["X-Amiflow-Nonce"] == "n0nce123"


@given(st.binary(max_size=200), st.text(alphabet="abcdef0123456789", min_size=8, max_size=32))
def test_a_signed_request_verifies_once(body: bytes, nonce: str) -> None:
    verifier = SignatureVerifier(SECRET, clock=lambda: 1_800_000_000.0)
    headers = {k.lower(): v for k, v in signature_headers(body, SECRET, 1_800_000_000, nonce, "k").items()}
    assert verifier.check(body, headers, key="k") is SignatureCheck.OK
    assert verifier.check(body, headers, key="k") is SignatureCheck.REPLAYED
    assert verifier.check(body + b"x", headers, key="k") is SignatureCheck.BAD


def test_keys_are_random_and_only_their_digest_is_kept() -> None:
    a, b = new_key(), new_key()
    assert a != b and a.startswith(KEY_PREFIX) and len(a) == 47
    assert key_digest(a) == hashlib.sha256(a.encode()).digest() and len(key_digest(a)) == 32


def test_the_mosquitto_hash_is_pbkdf2_sha512_of_the_raw_salt() -> None:
    salt = bytes(range(12))
    entry = hash_password("pw", salt=salt)
    digest = hashlib.pbkdf2_hmac("sha512", b"pw", salt, 101)
    assert entry == f"$7$101${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    assert check_password("pw", entry) and not check_password("px", entry) and not check_password("pw", "$6$x$y")


def test_known_passwords_are_kept_and_new_ones_made() -> None:
    found = fleet_credentials(["M1", "M2", "M1"], {"M1": "old"})
    assert found.passwords["M1"] == "old" and found.new == ("M2",) and len(found.passwords["M2"]) == 32


def _guarded(lookup: object) -> TestClient:
    app = FastAPI()
    app.state.amiflow_key_lookup = lookup

    @app.get("/x", dependencies=[Depends(authenticator(Settings(api_token="tok")))])
    def x() -> dict[str, str]:
        return {"ok": "yes"}

    return TestClient(app)


def test_a_stored_key_is_looked_up_and_an_unreachable_store_is_503_not_500() -> None:
    ok = _guarded(lambda key: Principal(Role.BILLING, "b") if key == "amk_good" else None)
    assert ok.get("/x", headers={"Authorization": "Bearer amk_good"}).status_code == 200
    assert ok.get("/x", headers={"Authorization": "Bearer amk_bad"}).status_code == 401

    def down(key: str) -> Principal | None:
        raise psycopg.OperationalError("connection refused")

    answer = _guarded(down).get("/x", headers={"Authorization": "Bearer amk_any"})
    assert answer.status_code == 503 and "database is unavailable" in answer.json()["detail"]
