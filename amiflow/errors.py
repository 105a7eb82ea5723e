"""The one exception tree of amiflow.

Every error amiflow raises is an :class:`AmiflowError`; third-party exceptions are translated at the adapter
boundary with ``raise ... from exc``::

    AmiflowError
    ├── ConfigError              a wrong setting, URI, tariff file or CLI argument
    ├── ProtocolError            a peer broke the protocol
    │   └── FrameError           a malformed frame (bad CRC/BCC, bad length, bad encoding)
    ├── TransportError           the link failed
    │   ├── ConnectError         could not connect / association refused
    │   └── ReadTimeout          no (complete) answer in time
    ├── StorageError             the database failed or refused
    ├── RatingError              a tariff cannot rate the given usage
    ├── BillingError             the billing system failed
    │   ├── BillingRejected      4xx: kept for an operator, never retried
    │   └── BillingUnavailable   5xx, timeout, refused: retried with backoff
    └── PolicyBlocked            a disconnect was refused by a consumer-protection rule

Bad meter *data* is not an exception: codecs and validators return issue records with stable codes.
"""

from __future__ import annotations

__all__ = [
    "AmiflowError",
    "BillingError",
    "BillingRejected",
    "BillingUnavailable",
    "ConfigError",
    "ConnectError",
    "FrameError",
    "PolicyBlocked",
    "ProtocolError",
    "RatingError",
    "ReadTimeout",
    "StorageError",
    "TransportError",
]


class AmiflowError(Exception):
    """Root of every error amiflow raises on purpose."""


class ConfigError(AmiflowError):
    """A setting, URI, file or argument is wrong; the message names it and the expected form."""


class ProtocolError(AmiflowError):
    """The peer does not follow the protocol."""


class FrameError(ProtocolError):
    """A frame is malformed (as opposed to incomplete, which is not an error)."""


class TransportError(AmiflowError):
    """The link to a meter, broker or server failed."""


class ConnectError(TransportError):
    """Could not connect, or the peer refused the association."""


class ReadTimeout(TransportError):
    """No complete answer arrived in time."""


class StorageError(AmiflowError):
    """The database failed or refused an operation."""


class RatingError(AmiflowError):
    """The tariff cannot rate the given usage."""


class BillingError(AmiflowError):
    """The billing system failed to take a bill or notice."""


class BillingRejected(BillingError):
    """The billing system rejected the item (4xx other than 409): kept for an operator."""


class BillingUnavailable(BillingError):
    """The billing system is unreachable or failing (5xx, timeout): retried later."""


class PolicyBlocked(AmiflowError):
    """A disconnect was refused by the policy; ``rules`` names the rules that blocked it."""

    def __init__(self, message: str, rules: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.rules = rules
