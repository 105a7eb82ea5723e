"""Customer tokens open exactly one account, are keyed from the API secret, and refuse anything forged."""

from __future__ import annotations

import pytest

from amiflow.errors import ConfigError
from amiflow.settings import Settings
from billing_bridge.customer import customer_token, token_account

SETTINGS = Settings(api_token="s3cret")


@pytest.mark.parametrize("account", ["ACC-1", "Konto Müller/7", "a.b:c"])
def test_round_trip(account: str) -> None:
    token = customer_token(SETTINGS, account)
    assert token.startswith("cu1.") and token_account(SETTINGS, token) == account


def test_forged_tampered_and_foreign_tokens_open_nothing() -> None:
    token = customer_token(SETTINGS, "ACC-1")
    prefix, label, mac = token.split(".")
    other = customer_token(SETTINGS, "ACC-2").split(".")[1]
    assert token_account(SETTINGS, f"{prefix}.{other}.{mac}") is None  # another account's label, this account's MAC
    assert token_account(SETTINGS, f"{prefix}.{label}.{mac[:-1]}0") is None
    assert token_account(Settings(api_token="rotated"), token) is None  # a new secret revokes every token
    for junk in ("", "s3cret", "cu1..", "cu1.!!!.00", "cu2." + token[4:]):
        assert token_account(SETTINGS, junk) is None


def test_needs_a_secret() -> None:
    with pytest.raises(ConfigError, match="AMIFLOW_API_TOKEN"):
        customer_token(Settings(), "ACC-1")
    assert token_account(Settings(), customer_token(SETTINGS, "ACC-1")) is None
    assert token_account(Settings(billing_secret="b"), customer_token(Settings(billing_secret="b"), "A")) == "A"
