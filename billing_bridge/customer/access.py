"""Customer access tokens: a bearer token that opens one account's usage data and nothing else.

A token is ``cu1.<account, base64url>.<HMAC-SHA256 of the account>``, keyed from ``AMIFLOW_API_TOKEN`` (or, without
it, ``AMIFLOW_BILLING_SECRET``): nothing is stored, any amiflow instance with the same secret checks it, and
changing the secret revokes every customer token at once. ``amiflow usage token --account A`` prints one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from amiflow.errors import ConfigError
from amiflow.settings import Settings

__all__ = ["customer_token", "token_account"]

_PREFIX = "cu1"


def _key(settings: Settings) -> bytes:
    secret = settings.api_token or settings.billing_secret
    if secret is None:
        raise ConfigError("customer tokens need AMIFLOW_API_TOKEN (or AMIFLOW_BILLING_SECRET) to be set")
    return hmac.new(secret.get_secret_value().encode(), b"amiflow customer tokens v1", hashlib.sha256).digest()


def _mac(key: bytes, account: str) -> str:
    return hmac.new(key, account.encode(), hashlib.sha256).hexdigest()


def customer_token(settings: Settings, account: str) -> str:
    """The bearer token of ``account``."""
    if not account:
        raise ConfigError("an account is needed for a customer token")
    label = base64.urlsafe_b64encode(account.encode()).decode().rstrip("=")
    return f"{_PREFIX}.{label}.{_mac(_key(settings), account)}"


def token_account(settings: Settings, token: str) -> str | None:
    """The account a genuine customer token opens; None for anything else (or without a configured secret)."""
    prefix, _, rest = token.partition(".")
    label, _, mac = rest.partition(".")
    if prefix != _PREFIX or not label or not mac:
        return None
    try:
        account = base64.urlsafe_b64decode(label + "=" * (-len(label) % 4)).decode()
        key = _key(settings)
    except (binascii.Error, UnicodeDecodeError, ValueError, ConfigError):
        return None
    return account if hmac.compare_digest(mac, _mac(key, account)) else None
