"""Webhook bodies are deterministic bytes and their HMAC-SHA256 signatures verify exactly (CONTRACT.md)."""

from __future__ import annotations

import hashlib
import hmac
import json

from hypothesis import given
from hypothesis import strategies as st

from billing_bridge.delivery import canonical_body, sign, verify

SECRET = b"s3cret"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def test_signature_is_hex_hmac_sha256_of_the_exact_body() -> None:
    body = b'{"bill_id":"B1","total":"12.30"}'
    expected = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    assert sign(body, SECRET) == f"sha256={expected}"
    assert verify(body, f"sha256={expected}", SECRET)


def test_tampered_body_wrong_secret_and_malformed_headers_fail() -> None:
    body = b'{"total":"12.30"}'
    header = sign(body, SECRET)
    assert not verify(b'{"total":"12.31"}', header, SECRET)
    assert not verify(body, header, b"other")
    assert not verify(body, header.removeprefix("sha256="), SECRET)
    assert not verify(body, None, SECRET)
    assert not verify(body, "sha1=" + header[7:], SECRET)


def test_body_ignores_key_order_and_keeps_money_strings() -> None:
    a = canonical_body({"total": "10.00", "account": "A1", "lines": [{"b": 1, "a": 2}]})
    b = canonical_body({"lines": [{"a": 2, "b": 1}], "account": "A1", "total": "10.00"})
    assert a == b == b'{"account":"A1","lines":[{"a":2,"b":1}],"total":"10.00"}'


def test_body_is_utf8_not_ascii_escaped() -> None:
    assert canonical_body({"name": "Zoë"}) == '{"name":"Zoë"}'.encode()


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_body_round_trips_and_is_stable(payload: dict[str, object]) -> None:
    body = canonical_body(payload)
    assert json.loads(body) == payload
    assert canonical_body(json.loads(body)) == body
    assert verify(body, sign(body, SECRET), SECRET)
